/**
 * Benchmark helpers. Every measurement runs a child process under GNU time so that our tool and
 * the anchor C tool are measured the same way: wall seconds and peak RSS, side by side in one run.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

export interface Measurement {
  seconds: number;
  /** Peak RSS of the process tree; 0 for a row computed in the bench itself (a floor), not run. */
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

// ---------------------------------------------------------------------------------------------

/**
 * The SHA-256 floor of a pipeline: how long the hashing that a job *must* do takes on this
 * machine when spread over every core with no other work at all. A time goal below that floor
 * cannot be met by any implementation that keeps the checks, so the bench prints it beside the
 * goal rather than leaving the reader to guess whether the gap is ours.
 *
 * Throughput is measured here, in this run (one worker thread per core, each hashing the same
 * 64 MiB buffer in 1 MiB updates, as a streaming importer does), because it differs a lot
 * between machines (SHA extensions) and with the load of the moment.
 */

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const buf = Buffer.alloc(64 << 20, 0x5a);
for (let i = 0; i < buf.length; i += 4096) buf[i] = i & 0xff;
const h = createHash('sha256');
const t0 = process.hrtime.bigint();
for (let r = 0; r < workerData.rounds; r++)
  for (let o = 0; o < buf.length; o += 1 << 20) h.update(buf.subarray(o, o + (1 << 20)));
h.digest();
parentPort.postMessage(Number(process.hrtime.bigint() - t0) / 1e9);
`;

/** Aggregate SHA-256 throughput of all cores together, bytes per second (best of `tries`). */
export async function sha256Throughput(tries = 3): Promise<number> {
  const cores = availableParallelism();
  const rounds = 2;
  let best = 0;
  for (let t = 0; t < tries; t++) {
    const times = await Promise.all(
      Array.from({ length: cores }, () => new Promise<number>((resolve, reject) => {
        const w = new Worker(WORKER, { eval: true, workerData: { rounds } });
        w.once('message', resolve);
        w.once('error', reject);
      })),
    );
    // the workers hash at the same time; the slowest one's own time is the wall time of the
    // hashing alone (worker start-up and buffer filling are not hashing)
    const seconds = Math.max(...times);
    best = Math.max(best, (cores * rounds * (64 << 20)) / seconds);
  }
  return best;
}
