/**
 * fs-verity hashing of streamed file contents on a worker thread, so that the main thread can
 * keep decompressing, verifying (blob digest, diffid) and parsing a layer while large files are
 * hashed. Bounded: a producer awaits `belowLimit()` between chunks, so at most `maxInFlight`
 * bytes are queued — memory stays flat however large the layer.
 *
 * The worker is a small self-contained CommonJS program (`eval`, so it runs the same from the
 * TypeScript sources and from dist) computing the fs-verity SHA-256 digest (4096-byte blocks,
 * no salt, descriptor v1; kernel semantics) — the same algorithm as ../fsverity.ts, against
 * which the tests check it (`fsverity digest`). Data blocks are hashed many at a time by
 * sha256-blocks (SIMD lanes when the native kernel is built).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { hashBlocksWorkerSource } from '../../../ostree-bindings/sha256-blocks.js';
import { ComposefsSourceError } from './errors.js';

const WORKER_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const crypto = require('node:crypto');
${hashBlocksWorkerSource('hashBlocks')}
const BS = 4096;
// Blocks are gathered into runs of 64 and each run is hashed in one call (SIMD lanes want many
// blocks; layer chunks are often only a few blocks long).
const RUN = 64;
const level0 = Buffer.allocUnsafeSlow(32 * RUN);
const sha = typeof crypto.hash === 'function'
  ? (d) => crypto.hash('sha256', d, 'buffer')
  : (d) => crypto.createHash('sha256').update(d).digest();
class Hasher {
  // pending starts at one block and grows to a run once the file is longer than that.
  constructor() { this.pending = Buffer.allocUnsafeSlow(BS); this.plen = 0; this.size = 0; this.levels = []; }
  pushHash(level, h) {
    let lv = this.levels[level];
    if (!lv) { lv = { buf: Buffer.alloc(BS), fill: 0, count: 0 }; this.levels[level] = lv; }
    h.copy(lv.buf, lv.fill); lv.fill += 32; lv.count++;
    if (lv.fill === BS) { lv.fill = 0; this.pushHash(level + 1, sha(lv.buf)); }
  }
  hashPending(n) {
    hashBlocks(this.pending, n, level0, 0);
    for (let i = 0; i < n; i++) this.pushHash(0, level0.subarray(i * 32, i * 32 + 32));
    this.plen = 0;
  }
  update(c) {
    this.size += c.length;
    let off = 0;
    while (off < c.length) {
      const take = Math.min(this.pending.length - this.plen, c.length - off);
      c.copy(this.pending, this.plen, off, off + take);
      this.plen += take;
      off += take;
      if (this.plen < this.pending.length) break;
      if (this.pending.length < RUN * BS) {
        const grown = Buffer.allocUnsafeSlow(RUN * BS);
        this.pending.copy(grown, 0, 0, this.plen);
        this.pending = grown;
      } else {
        this.hashPending(RUN);
      }
    }
  }
  digest() {
    if (this.plen > 0) {
      const n = Math.ceil(this.plen / BS);
      this.pending.fill(0, this.plen, n * BS);
      this.hashPending(n);
    }
    let root = Buffer.alloc(32);
    if (this.levels.length > 0) {
      for (let level = 0; ; level++) {
        const lv = this.levels[level];
        if (lv.count === 1) { root = Buffer.from(lv.buf.subarray(0, 32)); break; }
        if (lv.fill > 0) { lv.buf.fill(0, lv.fill); lv.fill = 0; this.pushHash(level + 1, sha(lv.buf)); }
      }
    }
    const d = Buffer.alloc(256);
    d[0] = 1; d[1] = 1; d[2] = 12;
    d.writeBigUInt64LE(BigInt(this.size), 8);
    root.copy(d, 16);
    return sha(d);
  }
}
const files = new Map();
parentPort.on('message', (m) => {
  let h = files.get(m.id);
  if (!h) { h = new Hasher(); files.set(m.id, h); }
  if (m.data) h.update(Buffer.from(m.data));
  if (m.end) {
    files.delete(m.id);
    const d = h.digest();
    parentPort.postMessage({ id: m.id, digest: d.buffer.slice(d.byteOffset, d.byteOffset + 32), size: h.size, bytes: m.data ? m.data.byteLength : 0 });
  } else if (m.data) {
    parentPort.postMessage({ id: m.id, bytes: m.data.byteLength });
  }
});
`;

interface Reply {
  id: number;
  bytes: number;
  digest?: ArrayBuffer;
  size?: number;
}

/** One streamed file being hashed by the pool. */
export interface PooledFile {
  data(chunk: Buffer): void;
  /** Resolves to the digest when the worker has hashed every byte. */
  end(): Promise<Buffer>;
}

export class HashPool {
  private readonly worker: Worker;
  private nextId = 1;
  private inFlight = 0;
  private readonly waiting = new Map<number, { resolve: (d: Buffer) => void; reject: (e: Error) => void; size: number }>();
  private drainWaiters: (() => void)[] = [];
  private failed: Error | undefined;
  private closing = false;

  constructor(private readonly maxInFlight = 8 << 20) {
    // Not unref'ed: while digests are awaited the worker is what keeps the process alive. Owners
    // close() the pool in a finally.
    this.worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
    this.worker.on('message', (m: Reply) => {
      this.inFlight -= m.bytes;
      if (m.digest) {
        const w = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        if (w && m.size !== w.size) w.reject(new ComposefsSourceError(`hash worker: file ${m.id} got ${m.size} bytes, expected ${w.size}`));
        else w?.resolve(Buffer.from(m.digest));
      }
      if (this.inFlight <= this.maxInFlight) this.wake();
    });
    this.worker.on('error', (e) => this.fail(new ComposefsSourceError(`hash worker failed: ${e.message}`)));
    this.worker.on('exit', (code) => {
      if (!this.closing) this.fail(new ComposefsSourceError(`hash worker exited unexpectedly (code ${code})`));
    });
  }

  /** Should hashing go to a worker on this machine? (More than one core.) */
  static useful(): boolean {
    return availableParallelism() > 1;
  }

  private fail(e: Error): void {
    this.failed = e;
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
    this.wake();
  }

  private wake(): void {
    const ws = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of ws) w();
  }

  /** Resolves once the queued bytes are at most the limit (immediately when they are). */
  belowLimit(): Promise<void> | undefined {
    if (this.failed) return Promise.reject(this.failed);
    if (this.inFlight <= this.maxInFlight) return undefined;
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Start hashing a file of `size` bytes whose data will follow. */
  file(size: number): PooledFile {
    const id = this.nextId++;
    let result: Promise<Buffer> | undefined;
    return {
      data: (chunk: Buffer) => {
        const copy = new Uint8Array(chunk.length);
        copy.set(chunk);
        this.inFlight += copy.byteLength;
        this.worker.postMessage({ id, data: copy.buffer }, [copy.buffer]);
      },
      end: () => {
        result ??= new Promise<Buffer>((resolve, reject) => {
          if (this.failed) {
            reject(this.failed);
            return;
          }
          this.waiting.set(id, { resolve, reject, size });
          this.worker.postMessage({ id, end: true });
        });
        return result;
      },
    };
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.worker.terminate();
  }
}
