/**
 * Caps on what an untrusted image may make an importer do (README "Limits"). Every import path
 * (unencapsulate, image pull, the OCI layer streams) takes an optional `limits` object; anything
 * left out comes from the environment variable `OSTREE_OCI_LIMITS` (`name=value,name=value`, what
 * the CLI's global `--limit name=value` sets) and then from DEFAULT_LIMITS. A cap that is hit
 * throws a `LimitError` whose message and `details.cap` name the cap, so the user knows which knob
 * to turn.
 */
import { OstreeOciError, UsageError } from './errors.js';

export interface ImportLimits {
  /**
   * A layer's decompressed size may be at most this many times its compressed (descriptor) size,
   * once it is past `layerRatioFloor` bytes. Stops gzip/zstd bombs before they fill a disk.
   */
  maxLayerRatio: number;
  /** Decompressed bytes of a layer that are always allowed, whatever the ratio. */
  layerRatioFloor: number;
  /** Bytes of one metadata object (commit, commitmeta, dirtree, dirmeta) in a layer. */
  maxMetadataSize: number;
  /** Bytes of one object's extended attributes: serialized `a(ayay)`, or the sum of its PAX records. */
  maxXattrsSize: number;
  /** Bytes of a tar entry name, a hardlink or symlink target, or a full path in the commit's tree. */
  maxPathLength: number;
  /** Entries (files + subdirectories) of one directory (dirtree). */
  maxDirEntries: number;
  /** Directory nesting of the commit's tree (the root is depth 0). */
  maxTreeDepth: number;
}

export const DEFAULT_LIMITS: Readonly<ImportLimits> = Object.freeze({
  maxLayerRatio: 250,
  layerRatioFloor: 64 * 1024 * 1024,
  // ostree's OSTREE_MAX_METADATA_SIZE (2022.7).
  maxMetadataSize: 10 * 1024 * 1024,
  // Linux's XATTR_SIZE_MAX: no filesystem stores more for one inode's value.
  maxXattrsSize: 64 * 1024,
  // Linux's PATH_MAX.
  maxPathLength: 4096,
  maxDirEntries: 262144,
  // libostree's OSTREE_MAX_RECURSION.
  maxTreeDepth: 256,
});

export const LIMIT_NAMES = Object.keys(DEFAULT_LIMITS) as Array<keyof ImportLimits>;

/** The environment variable holding `name=value,…` overrides (set by the CLI's `--limit`). */
export const LIMITS_ENV = 'OSTREE_OCI_LIMITS';

/** A cap of ImportLimits was exceeded; `cap` names it. */
export class LimitError extends OstreeOciError {
  constructor(
    readonly cap: keyof ImportLimits,
    readonly limit: number,
    readonly actual: number,
    what: string,
  ) {
    super(`${what}: exceeds limit ${cap} (${actual} > ${limit}; raise it with --limit ${cap}=N or ${LIMITS_ENV})`, {
      cap,
      limit,
      actual,
      what,
    });
  }
}

/** Parse `name=value[,name=value…]` (values: integers, optionally with a K/M/G suffix). */
export function parseLimits(spec: string, source = LIMITS_ENV): Partial<ImportLimits> {
  const out: Partial<ImportLimits> = {};
  for (const part of spec.split(',')) {
    const s = part.trim();
    if (!s) continue;
    const m = /^([A-Za-z]+)=(\d+)([KMG]?)$/.exec(s);
    if (!m) throw new UsageError(`${source}: bad limit ${JSON.stringify(s)} (want name=N, N an integer with optional K/M/G)`);
    const name = m[1] as keyof ImportLimits;
    if (!LIMIT_NAMES.includes(name)) throw new UsageError(`${source}: unknown limit ${JSON.stringify(m[1])} (known: ${LIMIT_NAMES.join(', ')})`);
    const value = Number(m[2]) * (m[3] === 'K' ? 1024 : m[3] === 'M' ? 1024 ** 2 : m[3] === 'G' ? 1024 ** 3 : 1);
    if (!Number.isSafeInteger(value) || value < 1) throw new UsageError(`${source}: limit ${name} must be a positive integer, got ${m[2]}${m[3]}`);
    out[name] = value;
  }
  return out;
}

/** Defaults ← `OSTREE_OCI_LIMITS` ← `given`. */
export function resolveLimits(given?: Partial<ImportLimits>): ImportLimits {
  const env = process.env[LIMITS_ENV];
  const fromEnv = env ? parseLimits(env) : {};
  const out: ImportLimits = { ...DEFAULT_LIMITS, ...fromEnv };
  for (const k of LIMIT_NAMES) {
    const v = given?.[k];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 1) throw new UsageError(`limit ${k} must be a positive integer, got ${String(v)}`);
    out[k] = v;
  }
  return out;
}

/** Throw a LimitError when `actual > limits[cap]`. */
export function checkLimit(limits: ImportLimits, cap: keyof ImportLimits, actual: number, what: string): void {
  if (actual > limits[cap]) throw new LimitError(cap, limits[cap], actual, what);
}

/** Largest decompressed size allowed for a layer whose compressed size is `compressed`. */
export function maxDecompressed(limits: ImportLimits, compressed: number): number {
  return Math.max(limits.layerRatioFloor, limits.maxLayerRatio * compressed);
}
