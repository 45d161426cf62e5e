/**
 * Object checksums computed in TypeScript (shared/specs/ostree-objects.md §3): metadata objects
 * hash their exact bytes; content objects hash BE32(len(H)) ‖ 0000 ‖ H ‖ payload where H is the
 * `(uuuusa(ayay))` file header with xattrs sorted.
 */
import { createHash, type Hash } from 'node:crypto';
import { sha256Messages } from '../../ostree-bindings/sha256-blocks.js';
import { Transform, type Readable } from 'node:stream';
import { fileObjectPrefix, serializeFileHeader, sortXattrs, type FileHeader } from '../gvariant/ostree-types.js';

export const sha256Hex = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** The content object stream prefix (length, padding, header) for a file header, xattrs sorted. */
export function contentPrefix(header: FileHeader): Buffer {
  return fileObjectPrefix(serializeFileHeader({ ...header, xattrs: sortXattrs(header.xattrs) }));
}

/** A running content checksum: feed the payload, then digest(). */
export class ContentHasher {
  private readonly hash: Hash;
  bytes = 0;
  constructor(header: FileHeader) {
    this.hash = createHash('sha256').update(contentPrefix(header));
  }
  update(chunk: Buffer): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
  }
  digest(): string {
    return this.hash.digest('hex');
  }
}

/** Content checksum of a file whose payload is in memory (empty for symlinks). */
export function contentChecksum(header: FileHeader, payload: Buffer = Buffer.alloc(0)): string {
  const h = new ContentHasher(header);
  h.update(payload);
  return h.digest();
}

/** Content checksum of a file whose payload is a stream. */
export async function contentChecksumStream(header: FileHeader, payload: Readable): Promise<string> {
  const h = new ContentHasher(header);
  for await (const chunk of payload) h.update(chunk as Buffer);
  return h.digest();
}

/** Content objects up to this payload size are read into memory (and may be checksummed in a batch). */
export const SMALL_CONTENT = 1 << 20;
/** Bytes a ContentBatch stages: 16 lanes × SMALL_CONTENT, so no object is longer than a lane's share. */
const CONTENT_BATCH_BYTES = 16 << 20;

/** A staged object after `ContentBatch.take()`: its computed checksum, and its object stream. */
export interface CheckedContent<T> {
  expected: string;
  actual: string;
  /** Prefix ‖ payload, a view into the batch's buffer: valid until the next `add()`. */
  bytes: Buffer;
  tag: T;
}

/**
 * Content objects checksummed many at once: their object streams (prefix ‖ payload) are staged
 * side by side and hashed in one sha256Messages call (one SIMD lane per object), where hashing one
 * object at a time leaves the kernel's lanes empty. Callers `add` while `fits`, else `take` first.
 */
export class ContentBatch<T> {
  private buf = Buffer.alloc(0);
  private used = 0;
  private items: Array<{ expected: string; off: number; len: number; tag: T }> = [];

  get size(): number {
    return this.items.length;
  }

  /** Can an object stream of `length` bytes (prefix ‖ payload) be added without a `take` first? */
  fits(length: number): boolean {
    return this.used === 0 || this.used + length <= this.buf.length;
  }

  add(expected: string, prefix: Buffer, payload: Buffer, tag: T): void {
    const len = prefix.length + payload.length;
    if (this.used + len > this.buf.length) {
      if (this.used > 0) throw new Error('ContentBatch.add: full (take() first)');
      this.buf = Buffer.allocUnsafe(Math.max(CONTENT_BATCH_BYTES, len));
    }
    prefix.copy(this.buf, this.used);
    payload.copy(this.buf, this.used + prefix.length);
    this.items.push({ expected, off: this.used, len, tag });
    this.used += len;
  }

  /** Checksum every staged object, in the order added, and empty the batch. */
  take(): Array<CheckedContent<T>> {
    const items = this.items;
    this.items = [];
    this.used = 0;
    if (items.length === 0) return [];
    const digests = sha256Messages(this.buf, items.map((x) => x.off), items.map((x) => x.len));
    return items.map((x, i) => ({
      expected: x.expected,
      actual: digests.toString('hex', i * 32, i * 32 + 32),
      bytes: this.buf.subarray(x.off, x.off + x.len),
      tag: x.tag,
    }));
  }

  /** Drop what is staged (the work it belonged to failed). */
  clear(): void {
    this.items = [];
    this.used = 0;
  }
}

/** A pass-through that hashes what flows through it (the object stream, prefix included). */
export class HashingPassThrough extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.push(chunk);
    cb();
  }
  digest(): string {
    return this.hash.digest('hex');
  }
}
