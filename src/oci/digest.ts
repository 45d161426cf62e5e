/**
 * sha256 digests and the streams that compute and verify them.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { WorkerSha256 } from './compression.js';
import { DiffIdMismatchError, OciDigestError, OciSizeError } from './errors.js';

export const sha256Digest = (data: Uint8Array | string): string =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Hex part of a `sha256:` digest. */
export const digestHex = (digest: string): string => digest.slice(digest.indexOf(':') + 1);

/** Pass-through that hashes (sha256) and counts the bytes flowing through it. */
export class HashCounter extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private _size = 0;
  private _digest: string | undefined;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this._size += chunk.length;
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this._digest = `sha256:${this.hash.digest('hex')}`;
    cb();
  }

  /** Bytes seen so far. */
  get size(): number {
    return this._size;
  }

  /** `sha256:<hex>` of everything; only valid after the stream has finished. */
  get digest(): string {
    if (this._digest === undefined) throw new Error('HashCounter: digest read before end of stream');
    return this._digest;
  }
}

export interface Expected {
  digest: string;
  /** When given, over-long input fails as soon as it exceeds this, short input fails at end. */
  size?: number;
}

/**
 * Where a verifying stream hashes: on the calling thread, or (for large layers, so the consumer's
 * own work is not slowed by it) on a worker (WorkerSha256).
 */
interface StreamHash {
  /** A promise when the caller must wait before adding more (back-pressure). */
  update(chunk: Buffer): Promise<void> | undefined;
  digest(): Promise<string>;
  close(): void;
}

function streamHash(offThread: boolean): StreamHash {
  if (offThread) {
    const w = new WorkerSha256();
    return { update: (c) => w.update(c), digest: async () => (await w.digest()).digest, close: () => w.close() };
  }
  const h = createHash('sha256');
  return {
    update: (c) => void h.update(c),
    digest: async () => `sha256:${h.digest('hex')}`,
    close: () => {},
  };
}

/** Blobs and layers from this size on are hashed off the calling thread. */
export const OFF_THREAD_HASH_MIN = 4 << 20;

/** Options of the verifying streams. */
export interface VerifyOptions {
  /**
   * Hash on a worker thread (worth it for streams of several MiB). VerifyStream's default: when the
   * expected size is at least OFF_THREAD_HASH_MIN.
   */
  offThread?: boolean;
}

/** Pass `chunk` on once `pending` (back-pressure of the hash) is settled. */
function passOn(pending: Promise<void> | undefined, chunk: Buffer, cb: TransformCallback): void {
  if (pending) pending.then(() => cb(null, chunk), cb);
  else cb(null, chunk);
}

/**
 * Pass-through that checks the bytes against an expected digest (and size). An over-long input
 * errors as soon as it exceeds the size; a short input or a digest mismatch errors at end of
 * stream, *instead of* 'end', so a consumer that reads to the end never mistakes bad data for
 * good. `what` names the blob in error messages (e.g. `layer 2 blob sha256:…`).
 */
export class VerifyStream extends Transform {
  private readonly hash: StreamHash;
  private count = 0;

  constructor(
    readonly expected: Expected,
    readonly what: string,
    opts: VerifyOptions = {},
  ) {
    super();
    this.hash = streamHash(opts.offThread ?? (expected.size ?? 0) >= OFF_THREAD_HASH_MIN);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.count += chunk.length;
    const size = this.expected.size;
    if (size !== undefined && this.count > size) {
      cb(new OciSizeError(this.what, size, this.count, true));
      return;
    }
    passOn(this.hash.update(chunk), chunk, cb);
  }

  override _flush(cb: TransformCallback): void {
    const size = this.expected.size;
    if (size !== undefined && this.count !== size) {
      cb(new OciSizeError(this.what, size, this.count, false));
      return;
    }
    this.hash.digest().then((actual) => cb(actual === this.expected.digest ? null : new OciDigestError(this.what, this.expected.digest, actual)), cb);
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.hash.close();
    cb(err);
  }
}

/** Checks the uncompressed bytes of layer i against its diffid (`rootfs.diff_ids[i]`). */
export class DiffIdCheck extends Transform {
  private readonly hash: StreamHash;
  constructor(
    private readonly index: number,
    private readonly layerDigest: string,
    private readonly expected: string,
    opts: VerifyOptions = {},
  ) {
    super();
    this.hash = streamHash(opts.offThread === true);
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    passOn(this.hash.update(chunk), chunk, cb);
  }
  override _flush(cb: TransformCallback): void {
    this.hash.digest().then(
      (actual) => cb(actual === this.expected ? null : new DiffIdMismatchError(this.index, this.layerDigest, this.expected, actual)),
      cb,
    );
  }
  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.hash.close();
    cb(err);
  }
}
