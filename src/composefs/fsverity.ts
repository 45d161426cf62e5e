/**
 * fs-verity digests (SHA-256, 4096-byte Merkle blocks, no salt, descriptor version 1), equal to
 * `fsverity digest` / FS_IOC_MEASURE_VERITY. Spec: composefs-format.md §9.
 *
 * The Merkle tree is built bottom-up while the data streams past: every level keeps exactly one
 * pending 4096-byte block of child hashes, so memory is O(tree height) = a few KiB for any size.
 *
 * Empty input (§9.4): the kernel and fsverity-utils use an all-zero root hash for an empty file
 * (digest `3d248ca5…`). libcomposefs' userspace code instead hashes one all-zero block (digest
 * `cfc33910…`). Every function here uses the **kernel** behaviour unless it is given
 * `{ emptyInput: 'libcomposefs' }`; the two only differ for zero-length input, and images and
 * external files with a digest are never empty, so the choice never affects composefs images.
 *
 * Functions:
 * - `fsverityDigest(buf)`: sync, whole buffer in memory (small data).
 * - `FsVerityHasher`: incremental, `update(chunk)` … `digest()`; flat memory.
 * - `fsverityDigestStream(readable)`: any (async) iterable of byte chunks, e.g. a Readable.
 * - `fsverityDigestFile(path)`: a file; files ≥ 32 MiB are hashed by a shared, lazily started pool
 *   of worker threads (one per core, at most 4; idle workers do not keep the process alive): the
 *   file is cut into 16 MiB ranges whose level-0 block hashes are independent, the workers hash
 *   them and the calling thread folds the hashes into the tree in order (a sliding window of jobs
 *   keeps memory flat).
 */
import * as nodeCrypto from 'node:crypto';
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { hashBlocks, hashBlocksWorkerSource } from '../../ostree-bindings/sha256-blocks.js';
import { OstreeOciError } from '../errors.js';
import { FS_VERITY_HASH_ALG_SHA256 } from './erofs/format.js';

export const FSVERITY_BLOCK_SIZE = 4096;
export const FSVERITY_HASH_SIZE = 32;
const LOG_BLOCK_SIZE = 12;

/** How to treat zero-length input (see the module comment): `kernel` (default) or `libcomposefs`. */
export type EmptyInputMode = 'kernel' | 'libcomposefs';

export interface FsVerityOptions {
  emptyInput?: EmptyInputMode;
}

export interface FsVerityFileOptions extends FsVerityOptions {
  /** Worker threads for large files; 0 or 1 hashes on the calling thread. Default: cores, max 4. */
  workers?: number;
  /** Files smaller than this are hashed on the calling thread (default 32 MiB). */
  parallelThreshold?: number;
  /** The size the caller saw (its lstat): a regular file of another size is an error. */
  expectedSize?: number;
}

/** A file could not be read completely while computing its fs-verity digest. */
export class FsVerityError extends OstreeOciError {}

const ZERO_BLOCK = Buffer.alloc(FSVERITY_BLOCK_SIZE);
/** Blocks hashed per hashBlocks call by FsVerityHasher (256 KiB). */
const RUN_BLOCKS = 64;
const RUN_BYTES = RUN_BLOCKS * FSVERITY_BLOCK_SIZE;

// crypto.hash (one-shot, cheaper per 4 KiB block) exists from Node 20.12; fall back to createHash.
const oneShotHash = (nodeCrypto as { hash?: (alg: string, data: Uint8Array, enc: 'buffer') => Buffer }).hash;
const sha256: (data: Uint8Array) => Buffer =
  typeof oneShotHash === 'function'
    ? (data) => oneShotHash('sha256', data, 'buffer')
    : (data) => createHash('sha256').update(data).digest();
/**
 * The hash levels above the data: accepts level-0 hashes (one per data block) in order and
 * folds them into the tree, keeping one pending block per level.
 */
export class MerkleTreeBuilder {
  private readonly levels: { buf: Buffer; fill: number; count: number }[] = [];

  /** Number of level-0 hashes pushed so far. */
  get blockCount(): number {
    return this.levels[0]?.count ?? 0;
  }

  /** Push one or more concatenated 32-byte level-0 hashes. */
  pushHashes(hashes: Uint8Array): void {
    if (hashes.length % FSVERITY_HASH_SIZE !== 0) {
      throw new FsVerityError(`fs-verity: hash buffer length ${hashes.length} is not a multiple of 32`);
    }
    for (let o = 0; o < hashes.length; o += FSVERITY_HASH_SIZE) {
      this.push(0, hashes.subarray(o, o + FSVERITY_HASH_SIZE));
    }
  }

  private push(level: number, h: Uint8Array): void {
    let lv = this.levels[level];
    if (!lv) {
      lv = { buf: Buffer.alloc(FSVERITY_BLOCK_SIZE), fill: 0, count: 0 };
      this.levels[level] = lv;
    }
    lv.buf.set(h, lv.fill);
    lv.fill += FSVERITY_HASH_SIZE;
    lv.count++;
    if (lv.fill === FSVERITY_BLOCK_SIZE) {
      lv.fill = 0;
      this.push(level + 1, sha256(lv.buf));
    }
  }

  /** The root hash (32 zero bytes when no block was pushed). Ends the builder. */
  root(): Buffer {
    if (this.blockCount === 0) return Buffer.alloc(FSVERITY_HASH_SIZE);
    for (let level = 0; ; level++) {
      const lv = this.levels[level]!;
      if (lv.count === 1) return Buffer.from(lv.buf.subarray(0, FSVERITY_HASH_SIZE));
      if (lv.fill > 0) {
        lv.buf.fill(0, lv.fill);
        lv.fill = 0;
        this.push(level + 1, sha256(lv.buf));
      }
    }
  }
}

/** The fs-verity digest = SHA-256 of the 256-byte v1 descriptor (§9.2). */
export function fsverityDescriptorDigest(rootHash: Uint8Array, dataSize: bigint | number): Buffer {
  const d = Buffer.alloc(256);
  d[0] = 1; // version
  d[1] = FS_VERITY_HASH_ALG_SHA256;
  d[2] = LOG_BLOCK_SIZE;
  d[3] = 0; // salt size
  d.writeBigUInt64LE(BigInt(dataSize), 8);
  d.set(rootHash, 16);
  return sha256(d);
}

/** Incremental fs-verity hasher with flat memory (a 256 KiB run of data, one block per tree level). */
export class FsVerityHasher {
  private readonly tree = new MerkleTreeBuilder();
  /**
   * Bytes not hashed yet: blocks are hashed in runs of up to RUN_BLOCKS per call, so that small
   * chunks still fill the SIMD lanes (sha256-blocks). Starts at one block, grows to a run.
   */
  private pending = Buffer.allocUnsafeSlow(FSVERITY_BLOCK_SIZE);
  private pendingLen = 0;
  private hashes: Buffer | undefined;
  private size = 0;
  private done = false;
  private readonly emptyInput: EmptyInputMode;

  constructor(opts: FsVerityOptions = {}) {
    this.emptyInput = opts.emptyInput ?? 'kernel';
  }

  /** Bytes hashed so far. */
  get length(): number {
    return this.size;
  }

  update(chunk: Uint8Array): this {
    if (this.done) throw new FsVerityError('fs-verity: update() after digest()');
    this.size += chunk.length;
    let off = 0;
    while (off < chunk.length) {
      if (this.pendingLen === 0 && chunk.length - off >= RUN_BYTES) {
        // Whole runs straight from the chunk, without copying.
        const n = Math.min(RUN_BLOCKS, Math.floor((chunk.length - off) / FSVERITY_BLOCK_SIZE));
        this.hashRun(chunk.subarray(off, off + n * FSVERITY_BLOCK_SIZE), n);
        off += n * FSVERITY_BLOCK_SIZE;
        continue;
      }
      const take = Math.min(this.pending.length - this.pendingLen, chunk.length - off);
      this.pending.set(chunk.subarray(off, off + take), this.pendingLen);
      this.pendingLen += take;
      off += take;
      if (this.pendingLen < this.pending.length) break;
      if (this.pending.length < RUN_BYTES) {
        const grown = Buffer.allocUnsafeSlow(RUN_BYTES);
        this.pending.copy(grown, 0, 0, this.pendingLen);
        this.pending = grown;
      } else {
        this.hashRun(this.pending, RUN_BLOCKS);
        this.pendingLen = 0;
      }
    }
    return this;
  }

  private hashRun(blocks: Uint8Array, n: number): void {
    this.hashes ??= Buffer.allocUnsafeSlow(RUN_BLOCKS * FSVERITY_HASH_SIZE);
    hashBlocks(blocks, n, this.hashes, 0);
    this.tree.pushHashes(this.hashes.subarray(0, n * FSVERITY_HASH_SIZE));
  }

  /** Finish and return the 32-byte digest. The hasher cannot be used afterwards. */
  digest(): Buffer {
    if (this.done) throw new FsVerityError('fs-verity: digest() called twice');
    this.done = true;
    if (this.pendingLen > 0) {
      // the last block is zero-padded
      const n = Math.ceil(this.pendingLen / FSVERITY_BLOCK_SIZE);
      this.pending.fill(0, this.pendingLen, n * FSVERITY_BLOCK_SIZE);
      this.hashRun(this.pending, n);
    }
    if (this.size === 0 && this.emptyInput === 'libcomposefs') this.tree.pushHashes(sha256(ZERO_BLOCK));
    return fsverityDescriptorDigest(this.tree.root(), this.size);
  }
}

/** fs-verity digest of a buffer (sync). Kernel semantics for empty input unless told otherwise. */
export function fsverityDigest(buf: Uint8Array, opts: FsVerityOptions = {}): Buffer {
  return new FsVerityHasher(opts).update(buf).digest();
}

/** fs-verity digest of a stream (any async iterable of Buffers/Uint8Arrays). Kernel semantics. */
export async function fsverityDigestStream(
  readable: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array>,
  opts: FsVerityOptions = {},
): Promise<Buffer> {
  const h = new FsVerityHasher(opts);
  for await (const chunk of readable as AsyncIterable<Uint8Array | string>) {
    if (typeof chunk === 'string') {
      throw new FsVerityError('fs-verity: stream yielded a string; read it without an encoding');
    }
    h.update(chunk);
  }
  return h.digest();
}

const READ_SIZE = 1 << 20;
const JOB_SIZE = 16 << 20; // a multiple of 4096 × 128, so jobs cover whole level-1 blocks
const DEFAULT_PARALLEL_THRESHOLD = 32 << 20;

/**
 * fs-verity digest of a file (kernel semantics for empty files). Large regular files are hashed in
 * parallel by worker threads; other files (pipes, devices) are streamed.
 */
export async function fsverityDigestFile(path: string, opts: FsVerityFileOptions = {}): Promise<Buffer> {
  // fs-verity is defined for regular files: a FIFO or a device (/dev/zero) would be read
  // forever, and opening a FIFO blocks. Checked before opening (symlinks followed).
  if (!(await stat(path)).isFile()) throw new FsVerityError(`fs-verity: ${path} is not a regular file`, { path, notRegular: true });
  // Opened first, so that the size checked is the size of the file read.
  const fh = await open(path, 'r');
  try {
    const st = await fh.stat({ bigint: true });
    const size = Number(st.size);
    if (st.isFile() && opts.expectedSize !== undefined && size !== opts.expectedSize) {
      throw new FsVerityError(`fs-verity: ${path} changed size (${opts.expectedSize} → ${size} bytes)`, { path });
    }
    const workers = opts.workers ?? Math.min(availableParallelism(), 4);
    const threshold = opts.parallelThreshold ?? DEFAULT_PARALLEL_THRESHOLD;
    if (st.isFile() && workers > 1 && size > 0 && size >= threshold) {
      const digest = await digestFileParallel(path, size, workers, opts);
      // The workers open the path for each range: it must still name the file measured above.
      const now = await stat(path, { bigint: true });
      if (now.ino !== st.ino || now.dev !== st.dev || now.size !== st.size || now.mtimeNs !== st.mtimeNs || now.ctimeNs !== st.ctimeNs) {
        throw new FsVerityError(`fs-verity: ${path} changed while it was read`, { path });
      }
      return digest;
    }
    const h = new FsVerityHasher(opts);
    const buf = Buffer.allocUnsafeSlow(READ_SIZE);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
    if (st.isFile() && h.length !== size) {
      throw new FsVerityError(`fs-verity: ${path} changed size while reading (${size} → ${h.length} bytes)`, {
        path,
      });
    }
    return h.digest();
  } finally {
    await fh.close();
  }
}

/**
 * Worker body (CommonJS, run with `eval: true` so it works the same from sources and from dist).
 * Two jobs:
 * - a byte range [start, start+length) of one large file: its level-0 block hashes (the file's
 *   last block zero-padded), concatenated and transferred, not copied;
 * - whole files (`paths`): their digests. Small files are staged together so that their blocks,
 *   and then the tree levels above them, are hashed many at a time (see sha256-blocks.ts).
 * Files are opened per job, so a path replaced between calls is never read through a stale fd.
 */
const WORKER_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const crypto = require('node:crypto');
${hashBlocksWorkerSource('hashBlocks')}
const BS = ${FSVERITY_BLOCK_SIZE};
let buf = null;
// Level-0 hashes of the files staged in buf, and the levels above them.
let hashes = Buffer.allocUnsafeSlow(BS);
let level = Buffer.allocUnsafeSlow(BS);
const grow = (b, n) => (b.length >= n ? b : Buffer.allocUnsafeSlow(Math.max(n, 2 * b.length)));

function descriptorDigest(root, size) {
  const d = Buffer.alloc(256);
  d[0] = 1; d[1] = 1; d[2] = 12;
  d.writeBigUInt64LE(BigInt(size), 8);
  root.copy(d, 16, 0, 32);
  return typeof crypto.hash === 'function' ? crypto.hash('sha256', d, 'buffer') : crypto.createHash('sha256').update(d).digest();
}

// Roots of many files' trees at once. files[i].count level-0 hashes start at h[files[i].at];
// each level above is hashed for all files in one hashBlocks call (SIMD lanes want many blocks).
function roots(files, h) {
  const out = files.map(() => Buffer.alloc(32));
  let cur = [];
  files.forEach((f, i) => {
    if (f.count === 1) h.copy(out[i], 0, f.at, f.at + 32);
    else if (f.count > 1) cur.push({ i, at: f.at, count: f.count });
  });
  let src = h;
  while (cur.length > 0) {
    // Each file's hashes, zero-padded to whole blocks, are the next level's data blocks.
    let blocks = 0;
    for (const f of cur) blocks += Math.ceil(f.count * 32 / BS);
    level = grow(level, blocks * BS);
    let b = 0;
    for (const f of cur) {
      const n = Math.ceil(f.count * 32 / BS);
      src.copy(level, b * BS, f.at, f.at + f.count * 32);
      level.fill(0, b * BS + f.count * 32, (b + n) * BS);
      f.at = b * 32;
      f.count = n;
      b += n;
    }
    const up = Buffer.allocUnsafeSlow(blocks * 32);
    hashBlocks(level, blocks, up, 0);
    src = up;
    cur = cur.filter((f) => {
      if (f.count > 1) return true;
      up.copy(out[f.i], 0, f.at, f.at + 32);
      return false;
    });
  }
  return out;
}

// Whole files (job.paths): each file's complete digest, 32 bytes per file, in order. Files are
// read into buf one after the other, each zero-padded to whole blocks, and every staged block is
// hashed in one call; a file larger than buf is hashed alone, a buffer at a time.
function filesDigests(paths, sizes, readSize) {
  const out = Buffer.allocUnsafeSlow(paths.length * 32);
  const cap = Math.floor(readSize / BS);
  let staged = [];
  let used = 0;
  const flush = () => {
    if (staged.length === 0) return;
    hashes = grow(hashes, used * 32);
    hashBlocks(buf, used, hashes, 0);
    const rs = roots(staged.map((f) => ({ at: f.first * 32, count: f.count })), hashes);
    staged.forEach((f, j) => descriptorDigest(rs[j], f.size).copy(out, f.k * 32));
    staged = [];
    used = 0;
  };
  for (let k = 0; k < paths.length; k++) {
    // Paths come as strings, or as bytes when they are not UTF-8.
    const p = paths[k];
    const path = typeof p === 'string' ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength);
    const expected = sizes[k];
    const fd = fs.openSync(path, 'r');
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new Error(path + ': not a regular file');
      const size = st.size;
      if (expected >= 0 && size !== expected) throw new Error(path + ' changed size (' + expected + ' → ' + size + ' bytes)');
      const count = Math.ceil(size / BS);
      if (count > cap) {
        flush();
        bigFile(fd, path, size, readSize).copy(out, k * 32);
        continue;
      }
      if (used + count > cap) flush();
      // Read the whole file, plus one byte to notice it growing.
      const at = used * BS;
      let got = 0;
      for (;;) {
        const n = fs.readSync(fd, buf, at + got, Math.min(size + 1 - got, buf.length - at - got), null);
        if (n === 0) break;
        got += n;
        if (got > size || at + got === buf.length) break;
      }
      if (got !== size) throw new Error(path + ' changed size while reading (' + size + ' → ' + got + (got > size ? '+' : '') + ' bytes)');
      buf.fill(0, at + size, at + count * BS);
      staged.push({ k, size, first: used, count });
      used += count;
    } finally {
      fs.closeSync(fd);
    }
  }
  flush();
  return out;
}

function bigFile(fd, path, size, readSize) {
  const count = Math.ceil(size / BS);
  hashes = grow(hashes, count * 32);
  let o = 0;
  let total = 0;
  for (;;) {
    const n = fs.readSync(fd, buf, 0, readSize, null);
    if (n === 0) break;
    total += n;
    if (total > size) break;
    const whole = Math.floor(n / BS);
    hashBlocks(buf, whole, hashes, o);
    o += whole * 32;
    if (whole * BS < n) {
      // A short read mid-file would misalign blocks: only the last block may be partial.
      if (total !== size) throw new Error(path + ': short read at offset ' + (total - n + whole * BS));
      buf.fill(0, n, (whole + 1) * BS);
      hashBlocks(buf.subarray(whole * BS), 1, hashes, o);
      o += 32;
    }
  }
  if (total !== size) throw new Error(path + ' changed size while reading (' + size + ' → ' + total + '+ bytes)');
  const digest = descriptorDigest(roots([{ at: 0, count }], hashes)[0], size);
  // The level buffers grew to 1/128 of the file: not kept for the rest of the worker's life.
  if (hashes.length > (1 << 20)) hashes = Buffer.allocUnsafeSlow(BS);
  if (level.length > (1 << 20)) level = Buffer.allocUnsafeSlow(BS);
  return digest;
}

parentPort.on('message', (job) => {
  // One spare block: a staged file that ends at readSize can still be read one byte past its size.
  if (buf === null || buf.length < job.readSize + BS) buf = Buffer.allocUnsafeSlow(job.readSize + BS);
  if (job.paths) {
    try {
      const out = filesDigests(job.paths, job.sizes, job.readSize);
      parentPort.postMessage({ hashes: out.buffer }, [out.buffer]);
    } catch (e) {
      parentPort.postMessage({ error: String(e && e.message ? e.message : e), code: e && e.code });
    }
    return;
  }
  let fd = -1;
  try {
    fd = fs.openSync(job.path, 'r');
    const readSize = job.readSize;
    const out = Buffer.allocUnsafeSlow(Math.ceil(job.length / BS) * 32);
    let o = 0;
    let done = 0;
    while (done < job.length) {
      const want = Math.min(readSize, job.length - done);
      let got = 0;
      while (got < want) {
        const n = fs.readSync(fd, buf, got, want - got, job.start + done + got);
        if (n === 0) throw new Error('unexpected end of file at offset ' + (job.start + done + got));
        got += n;
      }
      const whole = Math.ceil(got / BS);
      // Only the file's last range ends in a partial block: zero-pad it.
      buf.fill(0, got, whole * BS);
      hashBlocks(buf, whole, out, o);
      o += whole * 32;
      done += got;
    }
    parentPort.postMessage({ hashes: out.buffer }, [out.buffer]);
  } catch (e) {
    parentPort.postMessage({ error: String(e && e.message ? e.message : e) });
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
});
`;

interface HashJob {
  /** A byte range of one file (level-0 hashes back)… */
  path: string;
  start: number;
  length: number;
  /** …or whole files (their digests back, 32 bytes each). */
  paths?: Array<string | Buffer>;
  /** Their sizes when known (-1: not known): a file of another size is an error. */
  sizes?: number[];
  /** Estimated work in bytes. */
  cost: number;
  resolve: (hashes: Buffer) => void;
  reject: (err: Error) => void;
}

interface PoolWorker {
  worker: Worker;
  /** Jobs sent to this worker, answered in order. */
  busy: HashJob[];
  /** Their estimated cost in bytes (to hand the next job to the least loaded worker). */
  load: number;
}

/**
 * A lazily started pool of hashing workers shared by all calls (so many large files, even hashed
 * concurrently, use at most `size` threads). Idle workers are unref'd: they never keep the
 * process alive.
 */
class HashWorkerPool {
  private readonly workers: PoolWorker[] = [];
  private readonly queue: HashJob[] = [];

  constructor(private readonly size: number) {}

  run(path: string, start: number, length: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.queue.push({ path, start, length, cost: length, resolve, reject });
      this.pump();
    });
  }

  /** Digests of whole files, concatenated. */
  runFiles(paths: Array<string | Buffer>, sizes: number[]): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      // A file costs its bytes plus about 16 KiB of reading small files (open, fstat, close).
      const cost = sizes.reduce((a, n) => a + Math.max(n, 0) + (16 << 10), 0);
      this.queue.push({ path: String(paths[0] ?? ''), start: 0, length: 0, paths, sizes, cost, resolve, reject });
      this.pump();
    });
  }

  /**
   * Jobs go to a worker as soon as they are queued, to the least loaded one. Handing out only a
   * job or two at a time would wait for replies, and those are read only when the calling thread
   * is idle: a synchronous commit walk left the workers without work until it ended.
   */
  private pump(): void {
    while (this.queue.length) {
      const job = this.queue.shift()!;
      let pw = this.workers.length < this.size ? this.spawn() : this.workers[0]!;
      for (const w of this.workers) if (w.load < pw.load) pw = w;
      if (pw.busy.length === 0) pw.worker.ref();
      pw.busy.push(job);
      pw.load += job.cost;
      pw.worker.postMessage(
        job.paths ? { paths: job.paths, sizes: job.sizes, readSize: READ_SIZE } : { path: job.path, start: job.start, length: job.length, readSize: READ_SIZE },
      );
    }
  }

  private spawn(): PoolWorker {
    const pw: PoolWorker = { worker: new Worker(WORKER_SOURCE, { eval: true, execArgv: [] }), busy: [], load: 0 };
    const dead = (err: Error): void => {
      const i = this.workers.indexOf(pw);
      if (i < 0) return;
      this.workers.splice(i, 1);
      for (const job of pw.busy.splice(0)) {
        job.reject(new FsVerityError(`fs-verity: hashing worker failed on ${job.path}: ${err.message}`, { path: job.path }));
      }
      void pw.worker.terminate();
      this.pump();
    };
    pw.worker.on('message', (msg: { hashes?: ArrayBuffer; error?: string }) => {
      const job = pw.busy.shift();
      if (job) pw.load -= job.cost;
      if (pw.busy.length === 0) pw.worker.unref();
      if (job) {
        if (msg.hashes) job.resolve(Buffer.from(msg.hashes));
        else if (job.paths) job.reject(new FsVerityError(`fs-verity: ${msg.error ?? 'no result'}`, { path: job.path }));
        else job.reject(new FsVerityError(`fs-verity: reading ${job.path}: ${msg.error ?? 'no result'}`, { path: job.path }));
      }
      this.pump();
    });
    pw.worker.on('error', dead);
    pw.worker.on('exit', (code) => dead(new Error(`worker exited with code ${code}`)));
    pw.worker.unref();
    this.workers.push(pw);
    return pw;
  }
}

const pools = new Map<number, HashWorkerPool>();
const poolOf = (n: number): HashWorkerPool => {
  let pool = pools.get(n);
  if (!pool) pools.set(n, (pool = new HashWorkerPool(n)));
  return pool;
};

export interface FsVerityFilesOptions {
  /**
   * Worker threads (default: cores, max 4). 0 hashes on the calling thread, one file after the
   * other; 1 (a single-core machine) hashes every file on one worker.
   */
  workers?: number;
  /** Sizes of the files when known: with 2+ workers, files of at least 32 MiB are split across them. */
  sizes?: number[];
  /** Called as digests arrive. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * fs-verity digests (kernel semantics) of many regular files. Files are added while the caller
 * still discovers them (walking a commit, say), so hashing overlaps that work. Small files go to
 * the workers in batches — each worker opens, reads and hashes a batch with its own reused
 * buffers — so per-file cost is a few syscalls and no allocation on the calling thread.
 */
export class FileDigestQueue {
  private readonly workers: number;
  private readonly out: Buffer[] = [];
  private readonly jobs: Promise<void>[] = [];
  private batch: Array<{ i: number; path: string | Buffer; size: number }> = [];
  private batchBytes = 0;
  private done = 0;
  private added = 0;

  constructor(private readonly opts: Omit<FsVerityFilesOptions, 'sizes'> = {}) {
    this.workers = opts.workers ?? Math.min(availableParallelism(), 4);
  }

  /** The calling thread's files (workers: 0), hashed one after the other. */
  private serial: Promise<void> = Promise.resolve();

  /**
   * Queue a file (`size` when known: files of at least 32 MiB are split across the workers).
   * A path that is not valid UTF-8 is passed as its bytes.
   */
  add(path: string | Buffer, size?: number): void {
    const i = this.added++;
    const digestOne = (): Promise<void> =>
      fsverityDigestFile(typeof path === 'string' ? path : (path as unknown as string), {
        workers: this.workers,
        ...(size !== undefined ? { expectedSize: size } : {}),
      }).then((d) => {
        this.out[i] = d;
        this.progress(1);
      });
    if (this.workers <= 0) {
      // One at a time: one descriptor and one read buffer however many files are queued (started
      // all at once, thousands of files hit EMFILE and held a 1 MiB buffer each).
      this.serial = this.serial.then(digestOne);
      this.track(this.serial);
      return;
    }
    if (this.workers > 1 && size !== undefined && size >= DEFAULT_PARALLEL_THRESHOLD) {
      this.track(digestOne());
      return;
    }
    this.batch.push({ i, path, size: size ?? -1 });
    this.batchBytes += size ?? 64 << 10;
    // Batches of about 4 MiB or 256 files: few messages, yet enough jobs to keep every worker busy.
    if (this.batchBytes >= 4 << 20 || this.batch.length >= 256) this.flush();
  }

  /** All digests, in the order the files were added; the first failure is thrown. */
  async finish(): Promise<Buffer[]> {
    this.flush();
    const results = await Promise.allSettled(this.jobs);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return this.out;
  }

  private track(p: Promise<void>): void {
    p.catch(() => {}); // awaited in finish(); no unhandled rejection meanwhile
    this.jobs.push(p);
  }

  private progress(n: number): void {
    this.done += n;
    this.opts.onProgress?.(this.done, this.added);
  }

  private flush(): void {
    if (this.batch.length === 0) return;
    const items = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    this.track(
      poolOf(this.workers)
        .runFiles(
          items.map((x) => x.path),
          items.map((x) => x.size),
        )
        .then((digests) => {
          items.forEach((x, k) => (this.out[x.i] = Buffer.from(digests.subarray(k * 32, k * 32 + 32))));
          this.progress(items.length);
        }),
    );
  }
}

/** fs-verity digests of many regular files, in order (see FileDigestQueue). */
export async function fsverityDigestFiles(paths: string[], opts: FsVerityFilesOptions = {}): Promise<Buffer[]> {
  const q = new FileDigestQueue(opts);
  paths.forEach((p, i) => q.add(p, opts.sizes?.[i]));
  return q.finish();
}

async function digestFileParallel(
  path: string,
  size: number,
  nWorkers: number,
  opts: FsVerityOptions,
): Promise<Buffer> {
  const nJobs = Math.ceil(size / JOB_SIZE);
  if (nJobs === 0) throw new FsVerityError(`fs-verity: ${path}: parallel hashing needs a non-empty file`, { path });
  const pool = poolOf(nWorkers);
  const tree = new MerkleTreeBuilder();
  // a sliding window of jobs: memory stays at window × 128 KiB of hashes whatever the file size
  const window = 2 * nWorkers;
  const pending: Promise<Buffer>[] = [];
  let next = 0;
  const submit = (): void => {
    const start = next++ * JOB_SIZE;
    const p = pool.run(path, start, Math.min(JOB_SIZE, size - start));
    p.catch(() => {}); // awaited in order below; avoid an unhandled rejection meanwhile
    pending.push(p);
  };
  while (next < nJobs && pending.length < window) submit();
  for (let i = 0; i < nJobs; i++) {
    tree.pushHashes(await pending.shift()!);
    if (next < nJobs) submit();
  }
  if (tree.blockCount !== Math.ceil(size / FSVERITY_BLOCK_SIZE)) {
    throw new FsVerityError(`fs-verity: ${path}: hashed ${tree.blockCount} blocks, expected ${Math.ceil(size / 4096)}`, {
      path,
    });
  }
  if (size === 0 && opts.emptyInput === 'libcomposefs') tree.pushHashes(sha256(ZERO_BLOCK));
  return fsverityDescriptorDigest(tree.root(), size);
}
