/**
 * Object checksums computed in TypeScript (shared/specs/ostree-objects.md §3): metadata objects
 * hash their exact bytes; content objects hash BE32(len(H)) ‖ 0000 ‖ H ‖ payload where H is the
 * `(uuuusa(ayay))` file header with xattrs sorted.
 */
import { createHash, type Hash } from 'node:crypto';
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
