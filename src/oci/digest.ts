/**
 * sha256 digests and the streams that compute and verify them.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
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
 * Pass-through that checks the bytes against an expected digest (and size). An over-long input
 * errors as soon as it exceeds the size; a short input or a digest mismatch errors at end of
 * stream, *instead of* 'end', so a consumer that reads to the end never mistakes bad data for
 * good. `what` names the blob in error messages (e.g. `layer 2 blob sha256:…`).
 */
export class VerifyStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;

  constructor(
    readonly expected: Expected,
    readonly what: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.count += chunk.length;
    const size = this.expected.size;
    if (size !== undefined && this.count > size) {
      cb(new OciSizeError(this.what, size, this.count, true));
      return;
    }
    this.hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const size = this.expected.size;
    if (size !== undefined && this.count !== size) {
      cb(new OciSizeError(this.what, size, this.count, false));
      return;
    }
    const actual = `sha256:${this.hash.digest('hex')}`;
    if (actual !== this.expected.digest) {
      cb(new OciDigestError(this.what, this.expected.digest, actual));
      return;
    }
    cb();
  }
}

/** Checks the uncompressed bytes of layer i against its diffid (`rootfs.diff_ids[i]`). */
export class DiffIdCheck extends Transform {
  private readonly hash: Hash = createHash('sha256');
  constructor(
    private readonly index: number,
    private readonly layerDigest: string,
    private readonly expected: string,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    const actual = `sha256:${this.hash.digest('hex')}`;
    cb(actual === this.expected ? null : new DiffIdMismatchError(this.index, this.layerDigest, this.expected, actual));
  }
}
