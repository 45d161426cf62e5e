/**
 * `npm run fuzz -- [--cases N] [--seed S] [--case K] [--classes a,b] [--ops unencapsulate,pull]
 *                  [--dumpfile-cases N] [--erofs-cases N] [--json FILE] [--keep] [--dir DIR]`
 *
 * Hostile-input fuzzing (issue 9):
 *  - image mutations (scripts/lib/fuzz/runner.ts): N seeded cases, each imported with
 *    `unencapsulate` and `image pull`; a failing case prints the command that reproduces it;
 *  - dumpfile and EROFS reader fuzzing (scripts/lib/fuzz/composefs.ts): random and mutated
 *    dumpfiles must get mkcomposefs 1.0.8's verdict (one oracle chroot per batch), and mutated
 *    EROFS images must never crash the reader.
 * Exit status 1 when any case fails.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { runFuzz, CLASSES, type Op } from './lib/fuzz/runner.js';
import { runComposefsFuzz } from './lib/fuzz/composefs.js';

function args(argv: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const [k, v] = a.includes('=') ? [a.slice(2, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a.slice(2), argv[i + 1]?.startsWith('--') === false ? argv[++i]! : 'true'];
    m.set(k, v);
  }
  return m;
}

async function main(): Promise<number> {
  const a = args(process.argv.slice(2));
  if (a.has('help')) {
    process.stdout.write(`usage: npm run fuzz -- [--cases N] [--seed S] [--case K] [--classes a,b] [--ops unencapsulate,pull] [--dumpfile-cases N] [--erofs-cases N] [--json FILE] [--keep] [--dir DIR]\nclasses: ${CLASSES.map(([n]) => n).join(', ')}\n`);
    return 0;
  }
  const seed = Number(a.get('seed') ?? Date.now() % 1_000_000);
  const cases = Number(a.get('cases') ?? 200);
  const dir = a.get('dir') ?? join(process.env['OSTREE_OCI_TMPDIR'] ?? tmpdir(), `ostree-oci-fuzz-${seed}-${process.pid}`);
  const log = (s: string): void => void process.stderr.write(`${s}\n`);
  log(`fuzz: seed ${seed}, ${cases} image case(s)`);
  const report = await runFuzz({
    cases,
    seed,
    dir,
    ...(a.has('case') ? { only: Number(a.get('case')) } : {}),
    ...(a.has('from') ? { from: Number(a.get('from')) } : {}),
    ...(a.has('classes') ? { classes: a.get('classes')!.split(',') } : {}),
    ...(a.has('ops') ? { ops: a.get('ops')!.split(',') as Op[] } : {}),
    ...(a.has('timeout') ? { timeoutMs: Number(a.get('timeout')) } : {}),
    keep: a.has('keep'),
    fsckAlways: a.has('fsck-always'),
    log,
  });
  const dumpCases = Number(a.get('dumpfile-cases') ?? (a.has('case') ? 0 : Math.min(400, cases)));
  const erofsCases = Number(a.get('erofs-cases') ?? (a.has('case') ? 0 : Math.min(400, cases)));
  const cfs = dumpCases + erofsCases > 0 ? await runComposefsFuzz({ seed, dumpfiles: dumpCases, erofs: erofsCases, dir: `${dir}-cfs`, keep: a.has('keep'), log }) : null;

  const rows = Object.entries(report.byClass).sort(([x], [y]) => x.localeCompare(y));
  log(`\nimage mutation classes (seed ${seed}): class  cases  imported  rejected  failures`);
  for (const [cls, s] of rows) log(`  ${cls.padEnd(22)} ${String(s.cases).padStart(5)} ${String(s.imported).padStart(9)} ${String(s.rejected).padStart(9)} ${String(s.failures).padStart(9)}`);
  log(`images: ${report.cases} cases, ${report.imports} imports, ${report.failures.length} failure(s), ${Math.round(report.ms / 1000)} s`);
  if (cfs) log(`composefs: ${cfs.dumpfiles} dumpfiles (${cfs.accepted} accepted by both, ${cfs.rejected} rejected by both), ${cfs.erofs} EROFS images (${cfs.erofsRead} read, ${cfs.erofsRejected} rejected), ${cfs.failures.length} failure(s)`);
  if (a.has('json')) writeFileSync(a.get('json')!, JSON.stringify({ images: report, composefs: cfs }, null, 1));
  const failed = report.failures.length + (cfs?.failures.length ?? 0);
  if (failed) log(`FAILED: ${failed} case(s); reproduce with the commands above`);
  return failed ? 1 : 0;
}

main().then(
  (c) => process.exit(c),
  (e) => {
    process.stderr.write(`fuzz: ${(e as Error).stack ?? e}\n`);
    process.exit(2);
  },
);
