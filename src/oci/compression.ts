/**
 * Layer compression and decompression streams.
 *
 * gzip: Node zlib, whose async stream work runs on the libuv threadpool, so several layers
 * compress in parallel without blocking the event loop. The gzip header is made identical to the
 * one flate2 writes for ostree-ext (specs/ostree-container-format.md §4.5): mtime 0, no name,
 * XFL 0 (level 6) / 4 (level 1) — zlib already does this — and OS = 255 (zlib writes 3), patched
 * here. The deflate bytes depend on the zlib build, so blob digests are reproducible on one
 * machine/Node version but not guaranteed across them (as upstream).
 *
 * zstd: zstd-napi's CompressStream compresses each chunk synchronously on the calling thread, so
 * several layers would compress one after the other on the event loop. Compression therefore
 * runs in a small pool of worker threads (at most min(4, cores)), each hosting any number of
 * independent zstd contexts, one per layer stream; a stream has at most two 1 MiB requests in
 * flight, which gives back-pressure. Output is one zstd frame per layer, single-threaded zstd, no content
 * size / checksum flags (like `zstd` streaming), deterministic for a given input and level.
 * A stream that also needs its digests (an image layer's diffid and blob digest) has its output
 * hashed by the compressing worker and its input by a WorkerSha256 (below), which normally lands
 * on another worker of the pool, so compression and the diffid hash of one layer use two cores.
 * Decompression uses zstd-napi's DecompressStream (synchronous per chunk, fast).
 */
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';
import zlib from 'node:zlib';
import { DecompressStream } from 'zstd-napi';
import type { Compression } from './types.js';

export const DEFAULT_GZIP_LEVEL = 6;
export const FAST_GZIP_LEVEL = 1;
export const DEFAULT_ZSTD_LEVEL = 3;
export const FAST_ZSTD_LEVEL = 1;

/** Compression level to use for `c` given the options. */
export function resolveLevel(c: Compression, opts: { level?: number; fast?: boolean }): number {
  if (opts.level !== undefined) return opts.level;
  if (c === 'gzip') return opts.fast ? FAST_GZIP_LEVEL : DEFAULT_GZIP_LEVEL;
  if (c === 'zstd') return opts.fast ? FAST_ZSTD_LEVEL : DEFAULT_ZSTD_LEVEL;
  return 0;
}

/** Rewrites byte 9 (OS) of the gzip header to 255 ("unknown"), as flate2 writes it. */
class GzipHeaderOs extends Transform {
  private seen = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.seen <= 9 && this.seen + chunk.length > 9) {
      chunk = Buffer.from(chunk);
      chunk[9 - this.seen] = 0xff;
    }
    this.seen += chunk.length;
    cb(null, chunk);
  }
}

/** Streams that turn an uncompressed tar into compressed bytes (empty for 'none'). */
export function compressionStages(c: Compression, level: number): Transform[] {
  switch (c) {
    case 'none':
      return [];
    case 'gzip':
      if (!Number.isInteger(level) || level < 0 || level > 9) throw new RangeError(`gzip level ${level} not in 0..9`);
      return [zlib.createGzip({ level, chunkSize: 64 * 1024 }), new GzipHeaderOs()];
    case 'zstd':
      return [new ZstdWorkerCompressStream(checkZstdLevel(level))];
  }
}

/** `level` if it is a valid zstd level, RangeError otherwise. */
export function checkZstdLevel(level: number): number {
  if (!Number.isInteger(level) || level < -7 || level > 22) throw new RangeError(`zstd level ${level} not in -7..22`);
  return level;
}

/** Stream that decompresses `c` (undefined for 'none'). */
export function decompressionStage(c: Compression): Transform | undefined {
  switch (c) {
    case 'none':
      return undefined;
    case 'gzip':
      return zlib.createGunzip({ chunkSize: 64 * 1024 });
    case 'zstd':
      return new DecompressStream();
  }
}

// ---------------------------------------------------------------------------------------------
// zstd worker pool

const WORKER_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const binding = require(workerData.bindingPath);
const OUT = binding.cStreamOutSize();
const ctxs = new Map();
function run(cctx, input, end) {
  const outs = [];
  let total = 0;
  let buf = Buffer.allocUnsafe(OUT);
  const directive = end ? binding.EndDirective.end : binding.EndDirective.continue;
  for (;;) {
    const [ret, produced, consumed] = cctx.compressStream2(buf, input, directive);
    if (produced > 0) { outs.push(buf.subarray(0, produced)); total += produced; buf = Buffer.allocUnsafe(OUT); }
    input = input.subarray(consumed);
    if (input.length === 0 && (!end || ret === 0)) break;
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const o of outs) { out.set(o, off); off += o.length; }
  return out;
}
const hashes = new Map();
parentPort.on('message', (m) => {
  try {
    if (m.op === 'open') {
      const cctx = new binding.CCtx();
      cctx.setParameter(binding.CParameter.compressionLevel, m.level);
      ctxs.set(m.stream, { cctx, hout: m.hashOut ? createHash('sha256') : undefined, nout: 0 });
      parentPort.postMessage({ seq: m.seq, ok: true });
    } else if (m.op === 'data') {
      const st = ctxs.get(m.stream);
      if (!st) throw new Error('zstd worker: unknown stream ' + m.stream);
      const input = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      const out = run(st.cctx, input, m.end);
      let outHash;
      if (st.hout) {
        st.hout.update(out); st.nout += out.length;
        if (m.end) outHash = { digest: st.hout.digest('hex'), size: st.nout };
      }
      if (m.end) ctxs.delete(m.stream);
      parentPort.postMessage({ seq: m.seq, ok: true, data: out, hash: outHash }, [out.buffer]);
    } else if (m.op === 'hash') {
      // sha256 of a stream's input, fed batch by batch.
      let h = hashes.get(m.stream);
      if (!h) { h = { hash: createHash('sha256'), n: 0 }; hashes.set(m.stream, h); }
      h.hash.update(m.data); h.n += m.data.byteLength;
      let hash;
      if (m.end) { hash = { digest: h.hash.digest('hex'), size: h.n }; hashes.delete(m.stream); }
      // The batch goes back for reuse: left here, it would wait for this heap's next GC, which
      // hashing alone hardly ever triggers.
      parentPort.postMessage({ seq: m.seq, ok: true, hash, data: m.data }, [m.data.buffer]);
    } else if (m.op === 'free') {
      ctxs.delete(m.stream);
      hashes.delete(m.stream);
      parentPort.postMessage({ seq: m.seq, ok: true });
    }
  } catch (e) {
    parentPort.postMessage({ seq: m.seq, ok: false, message: String((e && e.message) || e) });
  }
});
`;

interface Reply {
  seq: number;
  ok: boolean;
  data?: Uint8Array;
  /** On the final reply of a hashed stream: sha256 (hex) and size of what was hashed. */
  hash?: { digest: string; size: number };
  message?: string;
}

/** sha256 digests and sizes of a compressed stream's input and output (see ZstdWorkerCompressStream). */
export interface CompressedDigests {
  /** `sha256:` of the uncompressed input (a layer's diffid). */
  uncompressedDigest: string;
  uncompressedSize: number;
  /** `sha256:` of the compressed output (the blob digest). */
  digest: string;
  size: number;
}

class PoolWorker {
  readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private seq = 0;
  streams = 0;
  dead: Error | undefined;

  constructor(bindingPath: string) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { bindingPath } });
    this.worker.unref();
    this.worker.on('message', (r: Reply) => {
      const w = this.waiting.get(r.seq);
      if (!w) return;
      this.waiting.delete(r.seq);
      if (this.waiting.size === 0) this.worker.unref();
      if (r.ok) w.resolve(r);
      else w.reject(new Error(`zstd compression failed: ${r.message}`));
    });
    const die = (err: Error): void => {
      this.dead = err;
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    };
    this.worker.on('error', (e) => die(e instanceof Error ? e : new Error(String(e))));
    this.worker.on('exit', (code) => die(new Error(`zstd worker exited (code ${code})`)));
  }

  request(msg: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<Reply> {
    if (this.dead) return Promise.reject(this.dead);
    const seq = ++this.seq;
    return new Promise<Reply>((resolve, reject) => {
      this.waiting.set(seq, { resolve, reject });
      // Keep the process alive while a request is outstanding.
      this.worker.ref();
      this.worker.postMessage({ ...msg, seq }, transfer);
    });
  }
}

const pool: PoolWorker[] = [];
let bindingPath: string | undefined;
let nextStreamId = 0;

/**
 * The pool worker with the fewest streams, a new one while the pool is not full. A stream's input
 * hash (WorkerSha256), taken after its compressor was counted, so lands on another worker when
 * the loads are otherwise even: hashing and compressing the same bytes then use two cores.
 */
function acquireWorker(): PoolWorker {
  for (let i = pool.length - 1; i >= 0; i--) if (pool[i]!.dead) pool.splice(i, 1);
  const max = Math.max(1, Math.min(4, availableParallelism()));
  if (pool.length < max) {
    bindingPath ??= createRequire(import.meta.url).resolve('zstd-napi/binding');
    const w = new PoolWorker(bindingPath);
    pool.push(w);
    w.streams++;
    return w;
  }
  let best = pool[0]!;
  for (const w of pool) if (w.streams < best.streams) best = w;
  best.streams++;
  return best;
}

/** Input is batched into requests of about this size. */
const BATCH = 1 << 20;
/** Requests outstanding per stream. */
const MAX_IN_FLIGHT = 2;

/** zstd compression Transform whose work runs in a worker thread (see module comment). */
export class ZstdWorkerCompressStream extends Transform {
  private worker: PoolWorker | undefined;
  /** With `hash`: the input's sha256 (the diffid), computed on a pool worker. */
  private inHash: WorkerSha256 | undefined;
  private readonly id = ++nextStreamId;
  private opened: Promise<unknown> | undefined;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private finished = false;
  private lastPush: Promise<void> = Promise.resolve();
  private readonly inFlight: Promise<void>[] = [];
  private _digests: CompressedDigests | undefined;

  /**
   * With `opts.hash`, workers also compute sha256 of the input and of the output, so the calling
   * thread need not hash the layer bytes; read them from `digests` after the stream has finished.
   * The input is hashed by a WorkerSha256 (normally on another worker), from its own copy of
   * each batch, so the two passes over the batch run side by side.
   */
  constructor(
    private readonly level: number,
    private readonly opts: { hash?: boolean } = {},
  ) {
    super();
  }

  /** Digests and sizes of input and output; only with `hash`, only after the stream finished. */
  get digests(): CompressedDigests {
    if (!this._digests) throw new Error('ZstdWorkerCompressStream: digests read before end of stream (or without hash: true)');
    return this._digests;
  }

  private open(): Promise<unknown> {
    if (!this.opened) {
      this.worker = acquireWorker();
      if (this.opts.hash) this.inHash = new WorkerSha256();
      this.opened = this.worker.request({ op: 'open', stream: this.id, level: this.level, hashOut: this.opts.hash === true });
    }
    return this.opened;
  }

  /**
   * Take exactly `n` bytes (n <= pendingLen) from the pending chunks into a fresh buffer of its
   * own (transferable; not zero-filled, as every byte is written).
   */
  private takePending(n: number): Uint8Array {
    const data = Buffer.allocUnsafeSlow(n);
    let off = 0;
    while (off < n) {
      const b = this.pending[0]!;
      const k = Math.min(b.length, n - off);
      data.set(k === b.length ? b : b.subarray(0, k), off);
      off += k;
      if (k === b.length) this.pending.shift();
      else this.pending[0] = b.subarray(k);
    }
    this.pendingLen -= n;
    return data;
  }

  /**
   * Post one request and return a promise that settles once its output has been pushed.
   * Requests are always exactly BATCH bytes except the final one, so the sequence of zstd calls,
   * and so the output, depends only on the input bytes, never on how the input stream happened
   * to be chunked. Up to MAX_IN_FLIGHT requests per stream are outstanding, so the worker can
   * compress one batch while this thread gathers the next; replies come back in order (one
   * worker, FIFO) and outputs are pushed in order (each waits for the previous one).
   */
  private send(n: number, end: boolean): Promise<void> {
    const data = this.takePending(n);
    const opened = this.open(); // also creates inHash
    // The hash copies the batch now, before `data` moves to the compressor. (Posting one shared
    // buffer to both instead cost ~1 ms of this thread per message; a 1 MiB memcpy ~0.1 ms.)
    const hashed = this.inHash?.update(data);
    const inDigest = end ? this.inHash?.digest() : undefined;
    const reply = opened.then(() =>
      this.worker!.request({ op: 'data', stream: this.id, data, end }, [data.buffer as ArrayBuffer]),
    );
    const pushed = Promise.all([this.lastPush, reply, hashed, inDigest]).then(([, r, , h]) => {
      if (end) this.release();
      if (end && r.hash && h)
        this._digests = {
          uncompressedDigest: h.digest,
          uncompressedSize: h.size,
          digest: `sha256:${r.hash.digest}`,
          size: r.hash.size,
        };
      if (r.data && r.data.length > 0) this.push(Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength));
    });
    pushed.catch(() => {}); // observed through inFlight / lastPush
    this.lastPush = pushed;
    this.inFlight.push(pushed);
    return pushed;
  }

  private release(): void {
    if (this.worker && !this.finished) {
      this.finished = true;
      this.worker.streams--;
    }
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingLen += chunk.length;
    while (this.pendingLen >= BATCH) void this.send(BATCH, false);
    if (this.inFlight.length < MAX_IN_FLIGHT) {
      cb();
      return;
    }
    (async () => {
      while (this.inFlight.length >= MAX_IN_FLIGHT) await this.inFlight.shift();
    })().then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    void this.send(this.pendingLen, true);
    (async () => {
      while (this.inFlight.length > 0) await this.inFlight.shift();
    })().then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    if (this.worker && !this.finished) {
      const w = this.worker;
      this.release();
      w.request({ op: 'free', stream: this.id }).catch(() => {});
    }
    this.inHash?.close();
    cb(err);
  }
}

/**
 * sha256 computed on a pool worker, for streams large enough that hashing on the calling thread
 * would make it the bottleneck (an image layer's blob digest and diffid while the importer parses
 * and re-checksums objects). Bytes are copied into 1 MiB batches and moved to the worker; the
 * batch buffers come back for reuse.
 */
export class WorkerSha256 {
  private w: PoolWorker | undefined;
  private readonly id = ++nextStreamId;
  private batch: Uint8Array | undefined;
  private fill = 0;
  private readonly inFlight: Promise<Reply>[] = [];
  private readonly spare: ArrayBuffer[] = [];
  private done = false;

  /**
   * Add bytes. Returns a promise when MAX_IN_FLIGHT batches are already with the worker: the
   * caller should wait for it before adding more (back-pressure), else undefined.
   */
  update(chunk: Uint8Array): Promise<void> | undefined {
    let off = 0;
    while (off < chunk.length) {
      this.batch ??= new Uint8Array(this.spare.pop() ?? new ArrayBuffer(BATCH));
      const k = Math.min(BATCH - this.fill, chunk.length - off);
      this.batch.set(chunk.subarray(off, off + k), this.fill);
      this.fill += k;
      off += k;
      if (this.fill === BATCH) this.post(false);
    }
    if (this.inFlight.length < MAX_IN_FLIGHT) return undefined;
    return (async () => {
      while (this.inFlight.length >= MAX_IN_FLIGHT) await this.inFlight.shift();
    })();
  }

  /** `sha256:<hex>` and size of everything added; ends this hash. */
  async digest(): Promise<{ digest: string; size: number }> {
    const last = this.post(true);
    try {
      await Promise.all(this.inFlight);
      const r = await last;
      return { digest: `sha256:${r.hash!.digest}`, size: r.hash!.size };
    } finally {
      this.release();
    }
  }

  /** Abandon the hash (the stream it follows failed or was destroyed). */
  close(): void {
    if (this.done || !this.w) return;
    this.release();
    this.w.request({ op: 'free', stream: this.id }).catch(() => {});
  }

  /** The worker, taken from the pool on first use (a stream never read costs no thread). */
  private get worker(): PoolWorker {
    return (this.w ??= acquireWorker());
  }

  private post(end: boolean): Promise<Reply> {
    const data = this.batch ? this.batch.subarray(0, this.fill) : new Uint8Array(0);
    this.batch = undefined;
    this.fill = 0;
    const r = this.worker.request({ op: 'hash', stream: this.id, data, end }, data.byteLength ? [data.buffer as ArrayBuffer] : []);
    r.then((x) => x.data && x.data.buffer.byteLength === BATCH && this.spare.push(x.data.buffer as ArrayBuffer)).catch(() => {});
    this.inFlight.push(r);
    return r;
  }

  private release(): void {
    if (this.done) return;
    this.done = true;
    if (this.w) this.w.streams--;
  }
}
