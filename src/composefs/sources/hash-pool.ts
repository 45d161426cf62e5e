/**
 * fs-verity hashing of streamed file contents on a worker thread, so that the main thread can
 * keep decompressing, verifying (blob digest, diffid) and parsing a layer while large files are
 * hashed. Bounded: a producer awaits `belowLimit()` between chunks, so at most `maxInFlight`
 * bytes are queued — memory stays flat however large the layer.
 *
 * The worker is a small self-contained CommonJS program (`eval`, so it runs the same from the
 * TypeScript sources and from dist) computing the fs-verity SHA-256 digest (4096-byte blocks,
 * no salt, descriptor v1; kernel semantics) — the same algorithm as ../fsverity.ts, against
 * which the tests check it (`fsverity digest`).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ComposefsSourceError } from './errors.js';

const WORKER_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const crypto = require('node:crypto');
const BS = 4096;
const sha = typeof crypto.hash === 'function'
  ? (d) => crypto.hash('sha256', d, 'buffer')
  : (d) => crypto.createHash('sha256').update(d).digest();
class Hasher {
  constructor() { this.pending = Buffer.alloc(BS); this.plen = 0; this.size = 0; this.levels = []; }
  pushHash(level, h) {
    let lv = this.levels[level];
    if (!lv) { lv = { buf: Buffer.alloc(BS), fill: 0, count: 0 }; this.levels[level] = lv; }
    h.copy(lv.buf, lv.fill); lv.fill += 32; lv.count++;
    if (lv.fill === BS) { lv.fill = 0; this.pushHash(level + 1, sha(lv.buf)); }
  }
  update(c) {
    this.size += c.length;
    let off = 0;
    if (this.plen > 0) {
      const take = Math.min(BS - this.plen, c.length);
      c.copy(this.pending, this.plen, 0, take); this.plen += take; off = take;
      if (this.plen < BS) return;
      this.pushHash(0, sha(this.pending)); this.plen = 0;
    }
    for (; c.length - off >= BS; off += BS) this.pushHash(0, sha(c.subarray(off, off + BS)));
    if (off < c.length) { c.copy(this.pending, 0, off); this.plen = c.length - off; }
  }
  digest() {
    if (this.plen > 0) { this.pending.fill(0, this.plen); this.pushHash(0, sha(this.pending)); }
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
