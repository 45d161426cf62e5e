/**
 * The hostile-input fuzzer (scripts/fuzz.ts) at CI size: ~100 image mutation cases, each imported
 * with unencapsulate and image pull (fresh and already-populated repositories), plus mutated
 * dumpfiles against mkcomposefs 1.0.8 (one oracle chroot) and mutated EROFS images through the
 * reader. Any accepted corrupt image, wrong commit/commitmeta, untyped error, crash, hang or
 * repository change after an error fails the run; its output names the seed and case. FUZZ_SEED
 * and FUZZ_CASES change the run (bigger runs: `npm run fuzz -- --cases 1000 --seed S`).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBuilt, ROOT, tmp } from './helpers/tmp.js';

const seed = Number(process.env['FUZZ_SEED'] ?? 20261121);
const cases = Number(process.env['FUZZ_CASES'] ?? 100);

// Build dist/ when a source is newer than the last build (idempotent, fast when up to date).
ensureBuilt();

t.test(`fuzz: ${cases} image cases, seed ${seed}`, async (t) => {
  const dir = tmp(t, 'ostree-oci-fuzz-ci-');
  const json = join(dir, 'report.json');
  const r = spawnSync(
    process.execPath,
    [join(ROOT, 'dist', 'scripts', 'fuzz.js'), '--cases', String(cases), '--seed', String(seed), '--dumpfile-cases', '150', '--erofs-cases', '150', '--dir', join(dir, 'work'), '--json', json],
    { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 600_000 },
  );
  const out = r.stderr ?? '';
  t.equal(r.status, 0, `fuzz run exit status (reproduce: npm run fuzz -- --cases ${cases} --seed ${seed})\n${out.split('\n').filter((l) => /FAIL|→|reproduce|fuzz:/.test(l)).slice(0, 60).join('\n')}`);
  const rep = JSON.parse(readFileSync(json, 'utf8')) as {
    images: { cases: number; imports: number; failures: unknown[]; byClass: Record<string, { imported: number; rejected: number }> };
    composefs: { dumpfiles: number; accepted: number; rejected: number; erofs: number; erofsRead: number; erofsRejected: number; failures: unknown[] };
  };
  t.equal(rep.images.cases, cases);
  t.equal(rep.images.imports, 2 * cases, 'each case imported by unencapsulate and image pull');
  t.equal(rep.images.failures.length, 0, 'no image failures');
  const classes = Object.keys(rep.images.byClass);
  t.ok(classes.length >= 25, `${classes.length} mutation classes exercised`);
  const imported = Object.values(rep.images.byClass).reduce((n, c) => n + c.imported, 0);
  const rejected = Object.values(rep.images.byClass).reduce((n, c) => n + c.rejected, 0);
  t.ok(imported >= 20 && rejected >= 60, `both outcomes occur (${imported} imported, ${rejected} rejected)`);
  t.equal(rep.composefs.failures.length, 0, 'no dumpfile/EROFS failures');
  t.ok(rep.composefs.accepted >= 10 && rep.composefs.rejected >= 50, `dumpfile verdicts both ways (${rep.composefs.accepted} accepted, ${rep.composefs.rejected} rejected, all agreeing with mkcomposefs)`);
  t.ok(rep.composefs.erofsRead >= 10 && rep.composefs.erofsRejected >= 10, `EROFS reader: ${rep.composefs.erofsRead} read, ${rep.composefs.erofsRejected} rejected, none crashed`);
  t.comment(out.split('\n').filter((l) => /^ {2}\S|^images:|^composefs:/.test(l)).join('\n'));
});
