/**
 * Benchmark helpers. Every measurement runs a child process under GNU time so that our tool and
 * the anchor C tool are measured the same way: wall seconds and peak RSS, side by side in one run.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Measurement {
  seconds: number;
  peakRssMiB: number;
}

export interface BenchRow {
  /** What was done, e.g. "dumpfile → EROFS (50k entries)". */
  work: string;
  ours: Measurement;
  anchorTool: string;
  anchor: Measurement;
  /** The goal as text, e.g. "time ≤ 1.0×, RSS ≤ 2×". */
  goal?: string;
}

export interface BenchContext {
  /** Scratch directory, removed after the run. */
  scratch: string;
  /** Repository root (where package.json is). */
  root: string;
  /** The built CLI entry point. */
  cli: string;
}

export interface BenchModule {
  title: string;
  run(ctx: BenchContext): Promise<BenchRow[]>;
}

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(here, '..', '..', '..');
export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

export interface MeasureOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Run through `sh -c` (for pipelines); cmd is then the script. */
  shell?: boolean;
}

/** Run a command under /usr/bin/time; fail loudly if it fails. Best of `repeat` runs. */
export async function measure(
  cmd: string,
  args: string[],
  opts: MeasureOptions = {},
  repeat = 1,
): Promise<Measurement> {
  let best: Measurement | undefined;
  for (let i = 0; i < repeat; i++) {
    const m = await measureOnce(cmd, args, opts);
    if (!best || m.seconds < best.seconds) best = { seconds: m.seconds, peakRssMiB: Math.max(m.peakRssMiB, best?.peakRssMiB ?? 0) };
  }
  return best!;
}

function measureOnce(cmd: string, args: string[], opts: MeasureOptions): Promise<Measurement> {
  const dir = mkdtempSync(join(tmpdir(), 'ostree-oci-bench-'));
  const out = join(dir, 'time');
  const argv = opts.shell ? ['sh', '-c', cmd] : [cmd, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '%e %M', '-o', out, ...argv], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      try {
        if (code !== 0) {
          reject(new Error(`benchmark command failed (${code}): ${argv.join(' ')}\n${stderr}`));
          return;
        }
        const [sec, kib] = readFileSync(out, 'utf8').trim().split(/\s+/).slice(-2);
        resolve({ seconds: Number(sec), peakRssMiB: Number(kib) / 1024 });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
