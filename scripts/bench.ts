/**
 * `npm run bench`: runs every module in scripts/bench/ (all but lib) and prints one table of
 * ratios against the named C tools, measured side by side in this run.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { hashBlocksImplementation } from '../ostree-bindings/sha256-blocks.js';
import { CLI, measure, ROOT, type BenchModule, type BenchRow } from './bench/lib.js';

const here = dirname(fileURLToPath(import.meta.url));

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const dir = join(here, 'bench');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.js') && f !== 'lib.js')
    .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
    .sort();
  const rows: BenchRow[] = [];
  let failed = 0;
  const sha = hashBlocksImplementation();
  process.stderr.write(
    `bench: SHA-256 kernel: ${sha.lanes ? `native, ${sha.lanes} lanes (${sha.library})` : "none, Node's crypto (see README, The SHA-256 kernel)"}\n`,
  );
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(dir, f)).href)) as { default: BenchModule };
    const scratch = mkdtempSync(join(tmpdir(), 'ostree-oci-bench-'));
    process.stderr.write(`bench: ${mod.default.title}\n`);
    try {
      rows.push(...(await mod.default.run({ scratch, root: ROOT, cli: CLI })));
    } catch (err) {
      failed++;
      process.stderr.write(`bench ${f} failed: ${(err as Error).message}\n`);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  printTable(rows);
  await noteNodeStart();
  if (failed) process.exitCode = 1;
}

/**
 * Every ostree-oci row includes one Node start. NODE_EXTRA_CA_CERTS (set on some machines for a
 * TLS proxy) makes Node read and parse that CA bundle before running anything, which ostree-oci
 * never needs; the table measures the environment as it is, and this line says what it costs.
 */
async function noteNodeStart(): Promise<void> {
  const start = async (env: NodeJS.ProcessEnv): Promise<number> =>
    (await measure(process.execPath, ['-e', '0'], { env }, 5)).seconds;
  const withEnv = await start(process.env);
  let line = `Node start (node -e 0, best of 5): ${withEnv.toFixed(2)} s`;
  if (process.env['NODE_EXTRA_CA_CERTS'] !== undefined) {
    const env = { ...process.env };
    delete env['NODE_EXTRA_CA_CERTS'];
    line += `, ${(await start(env)).toFixed(2)} s without NODE_EXTRA_CA_CERTS (set here: Node loads that CA bundle at every start)`;
  }
  process.stdout.write(`\n${line}\n`);
}

function printTable(rows: BenchRow[]): void {
  const header = ['work', 'ostree-oci s', 'MiB', 'anchor tool', 'anchor s', 'MiB', 'time ratio', 'RSS ratio', 'goal'];
  // A floor row has no process of its own, so no RSS: '—' rather than a ratio of 0.
  const measured = (r: BenchRow): boolean => r.ours.peakRssMiB > 0;
  const body = rows.map((r) => [
    r.work,
    r.ours.seconds.toFixed(2),
    measured(r) ? r.ours.peakRssMiB.toFixed(0) : '—',
    r.anchorTool,
    r.anchor.seconds.toFixed(2),
    r.anchor.peakRssMiB.toFixed(0),
    `${(r.ours.seconds / Math.max(r.anchor.seconds, 0.005)).toFixed(2)}×`,
    measured(r) ? `${(r.ours.peakRssMiB / Math.max(r.anchor.peakRssMiB, 1)).toFixed(2)}×` : '—',
    r.goal ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  process.stdout.write(`${line(header)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|\n`);
  for (const b of body) process.stdout.write(`${line(b)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
