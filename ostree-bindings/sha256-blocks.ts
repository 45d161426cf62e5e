/**
 * SHA-256 of many 4096-byte blocks at once — the work of fs-verity's Merkle tree — through the
 * small native kernel in native/sha256-4k.c, which hashes 16 (AVX-512) or 8 (AVX2) blocks side by
 * side in SIMD lanes. On a CPU without SHA extensions that is several times faster per core than
 * OpenSSL's one-block-at-a-time SHA-256. scripts/setup.sh builds native/libsha256-4k.so; without
 * it (or on a CPU without AVX2, or with OSTREE_OCI_NATIVE_SHA256=0) every block is hashed with
 * Node's crypto instead, with identical results.
 *
 * Hashing runs on the main thread and in worker threads (fs-verity pools). Both run the same
 * function: its source, HASH_BLOCKS_SOURCE, is evaluated here and embedded in the workers'
 * sources, so the only code that loads koffi stays in this folder. It is deliberately separate
 * from ffi.ts: composefs commands need it without loading libostree.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Hashes `n` consecutive 4096-byte blocks of `src`; digest i goes to out[outOffset + 32 i …]. */
export type HashBlocks = ((src: Uint8Array, n: number, out: Uint8Array, outOffset: number) => void) & {
  /** SIMD lanes of the native kernel in use; 0 when blocks are hashed with Node's crypto. */
  readonly lanes: number;
  /** The kernel's sha256_multi (see sha256Messages), null without the kernel. */
  readonly multi: ((base: Uint8Array, off: BigUint64Array, len: BigUint64Array, n: number, out: Uint8Array) => number) | null;
};

const here = dirname(fileURLToPath(import.meta.url));
const LIB_NAME = 'libsha256-4k.so';
/** From the sources (ostree-bindings/) or from the build (dist/ostree-bindings/). */
const libraryPath: string | null =
  [join(here, 'native', LIB_NAME), join(here, '..', '..', 'ostree-bindings', 'native', LIB_NAME)].find((p) =>
    existsSync(p),
  ) ?? null;
const require = createRequire(import.meta.url);
const koffiPath = require.resolve('koffi');

/**
 * `(require, libraryPath, koffiPath) => HashBlocks`, as CommonJS source text. Below a quarter of
 * the lanes' worth of blocks, a SIMD pass would mostly hash padding: those go to Node's crypto.
 */
const HASH_BLOCKS_SOURCE = `(function makeHashBlocks(require, libraryPath, koffiPath) {
  const crypto = require('node:crypto');
  const hashOne = typeof crypto.hash === 'function'
    ? (d, out, o) => { Buffer.from(out.buffer, out.byteOffset, out.byteLength).latin1Write(crypto.hash('sha256', d, 'latin1'), o, 32); }
    : (d, out, o) => { out.set(crypto.createHash('sha256').update(d).digest(), o); };
  let many = null;
  let multi = null;
  let lanes = 0;
  if (libraryPath !== null && process.env.OSTREE_OCI_NATIVE_SHA256 !== '0') {
    try {
      const lib = require(koffiPath).load(libraryPath);
      const level = lib.func('int sha256_4k_level(void)')();
      if (level > 0) {
        lanes = level === 2 ? 16 : 8;
        many = lib.func('int sha256_4k_many(const void *src, size_t n, void *out)');
        multi = lib.func('int sha256_multi(const void *base, const void *off, const void *len, size_t n, void *out)');
      }
    } catch (e) {
      many = null;
      multi = null;
      lanes = 0;
    }
  }
  function hashBlocks(src, n, out, o) {
    if (src.length < n * 4096 || out.length < o + n * 32) throw new RangeError('hashBlocks: buffer too small');
    let i = 0;
    if (many !== null && n * 4 >= lanes) {
      const rest = n % lanes;
      i = rest * 4 >= lanes ? n : n - rest;
      if (many(src.subarray(0, i * 4096), i, out.subarray(o, o + i * 32)) !== 0) throw new Error('sha256_4k_many failed');
    }
    for (; i < n; i++) hashOne(src.subarray(i * 4096, i * 4096 + 4096), out, o + i * 32);
  }
  Object.defineProperty(hashBlocks, 'lanes', { value: lanes });
  Object.defineProperty(hashBlocks, 'multi', { value: multi });
  return hashBlocks;
})`;

/**
 * CommonJS source for a worker (run with `eval: true`, where `require` exists) that defines
 * `const <name> = <HashBlocks>`.
 */
export function hashBlocksWorkerSource(name: string): string {
  return `const ${name} = ${HASH_BLOCKS_SOURCE}(require, ${JSON.stringify(libraryPath)}, ${JSON.stringify(koffiPath)});\n`;
}

let mainThread: HashBlocks | undefined;

/** The calling thread's HashBlocks (loads the native kernel on first use). */
export function hashBlocks(src: Uint8Array, n: number, out: Uint8Array, outOffset: number): void {
  mainThread ??= instantiate();
  mainThread(src, n, out, outOffset);
}

function instantiate(): HashBlocks {
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- the same text the workers run
  const make = new Function(`return ${HASH_BLOCKS_SOURCE};`)() as (
    req: NodeRequire,
    lib: string | null,
    koffi: string,
  ) => HashBlocks;
  return make(require, libraryPath, koffiPath);
}

/**
 * SHA-256 of many messages at once: message i is `base[offsets[i] … offsets[i] + lengths[i])`,
 * its digest goes to the result at 32 i. The native kernel hashes one message per SIMD lane and
 * refills a lane as soon as its message ends; messages are handed out longest first, so lanes
 * finish together when no message is longer than a lane's share of the batch. With fewer
 * messages than lanes, or without the kernel, each message is hashed with Node's crypto.
 */
export function sha256Messages(base: Uint8Array, offsets: readonly number[], lengths: readonly number[]): Buffer {
  const n = offsets.length;
  if (lengths.length !== n) throw new RangeError('sha256Messages: offsets and lengths differ in length');
  for (let i = 0; i < n; i++) {
    if (offsets[i]! < 0 || lengths[i]! < 0 || offsets[i]! + lengths[i]! > base.length) throw new RangeError(`sha256Messages: message ${i} is outside the buffer`);
  }
  const out = Buffer.allocUnsafe(n * 32);
  mainThread ??= instantiate();
  const f = mainThread.multi;
  if (f && n >= mainThread.lanes) {
    const order = [...offsets.keys()].sort((a, b) => lengths[b]! - lengths[a]!);
    const off = new BigUint64Array(n);
    const len = new BigUint64Array(n);
    order.forEach((m, k) => {
      off[k] = BigInt(offsets[m]!);
      len[k] = BigInt(lengths[m]!);
    });
    const sorted = Buffer.allocUnsafe(n * 32);
    if (f(base, off, len, n, sorted) !== 0) throw new Error('sha256_multi failed');
    order.forEach((m, k) => sorted.copy(out, m * 32, k * 32, k * 32 + 32));
    return out;
  }
  for (let i = 0; i < n; i++) {
    createHash('sha256').update(base.subarray(offsets[i]!, offsets[i]! + lengths[i]!)).digest().copy(out, i * 32);
  }
  return out;
}

/** Which implementation hashes blocks here (for benchmarks and diagnostics). */
export function hashBlocksImplementation(): { library: string | null; lanes: number } {
  mainThread ??= instantiate();
  return { library: libraryPath, lanes: mainThread.lanes };
}
