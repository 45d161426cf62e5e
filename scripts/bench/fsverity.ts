/**
 * fs-verity digest of a 1 GiB file of pseudo-random data: `ostree-oci fsverity FILE` (worker
 * threads) against `fsverity digest FILE` (fsverity-utils, C, single thread). Both read the file
 * from the page cache (it is read once before timing); the two outputs must be identical.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { measure, type BenchContext, type BenchModule, type BenchRow, type Measurement } from './lib.js';

const SIZE = 1 << 30;

function makeFile(path: string): void {
  const fd = openSync(path, 'w');
  try {
    const chunk = 4 << 20;
    for (let o = 0; o < SIZE; o += chunk) writeSync(fd, randomBytes(Math.min(chunk, SIZE - o)));
  } finally {
    closeSync(fd);
  }
}

function warm(path: string): void {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(4 << 20);
  try {
    while (readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}

const bench: BenchModule = {
  title: 'fs-verity digest of a 1 GiB file',
  async run(ctx: BenchContext): Promise<BenchRow[]> {
    const file = join(ctx.scratch, 'random-1g.bin');
    makeFile(file);
    warm(file);
    const ours = execFileSync('node', [ctx.cli, 'fsverity', file], { encoding: 'utf8' });
    const theirs = execFileSync('fsverity', ['digest', file], { encoding: 'utf8' });
    if (ours !== theirs) throw new Error(`fsverity digests differ:\n ours:   ${ours} fsverity: ${theirs}`);
    // interleaved, best of 3 each, so both tools see the same machine load
    let oursM: Measurement | undefined;
    let anchorM: Measurement | undefined;
    const best = (a: Measurement | undefined, b: Measurement): Measurement =>
      !a ? b : { seconds: Math.min(a.seconds, b.seconds), peakRssMiB: Math.max(a.peakRssMiB, b.peakRssMiB) };
    for (let i = 0; i < 3; i++) {
      oursM = best(oursM, await measure('node', [ctx.cli, 'fsverity', file]));
      anchorM = best(anchorM, await measure('fsverity', ['digest', file]));
    }
    return [
      {
        work: 'fs-verity digest, 1 GiB random file (page cache)',
        ours: oursM!,
        anchorTool: 'fsverity digest',
        anchor: anchorM!,
        goal: 'time ≤ 1.0×',
      },
    ];
  },
};

export default bench;
