/**
 * fs-verity digests of ostree content objects. In bare, bare-user and bare-user-only repositories a
 * regular file's payload is the loose object file itself, so it is hashed straight from disk
 * (large files across worker threads); archive repositories decompress through libostree.
 */
import { join } from 'node:path';
import type { Repo } from '../../ostree/repo.js';
import { fsverityDigestFile, fsverityDigestStream } from '../fsverity.js';

export class FileDigests {
  private readonly direct: boolean;

  constructor(private readonly repo: Repo) {
    this.direct = repo.mode === 'bare' || repo.mode === 'bare-user' || repo.mode === 'bare-user-only';
  }

  /** Digest of one regular-file content object's payload. */
  async digest(checksum: string): Promise<Buffer> {
    if (this.direct) {
      return fsverityDigestFile(join(this.repo.path, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.file`));
    }
    const f = this.repo.readFile(checksum);
    if (!f.stream) throw new Error(`content object ${checksum} has no payload`);
    return fsverityDigestStream(f.stream);
  }

  /** Digests of many objects, a few in flight at once so reads overlap hashing. */
  async digestAll(checksums: string[], onProgress?: (done: number, total: number) => void): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    let next = 0;
    let done = 0;
    const lanes = this.direct ? 4 : 1; // one libostree repo handle is used from one thread
    const lane = async (): Promise<void> => {
      while (next < checksums.length) {
        const c = checksums[next++]!;
        out.set(c, await this.digest(c));
        onProgress?.(++done, checksums.length);
      }
    };
    await Promise.all(Array.from({ length: lanes }, lane));
    return out;
  }
}
