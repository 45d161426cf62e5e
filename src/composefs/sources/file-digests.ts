/**
 * fs-verity digests of ostree content objects. In bare, bare-user and bare-user-only repositories a
 * regular file's payload is the loose object file itself, so it is hashed straight from disk
 * (large files across worker threads); archive repositories decompress through libostree.
 */
import { join } from 'node:path';
import type { Repo } from '../../ostree/repo.js';
import { fsverityDigestFile, fsverityDigestFiles, fsverityDigestStream } from '../fsverity.js';

export class FileDigests {
  private readonly direct: boolean;

  constructor(private readonly repo: Repo) {
    this.direct = FileDigests.direct(repo);
  }

  /** Are a repository's regular-file payloads its loose object files (bare modes)? */
  static direct(repo: Repo): boolean {
    return repo.mode === 'bare' || repo.mode === 'bare-user' || repo.mode === 'bare-user-only';
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

  /**
   * Digests of many objects (`sizes`: their payload sizes, when known). Loose files are read and
   * hashed by worker threads in batches; archive objects one at a time through libostree.
   */
  async digestAll(checksums: string[], onProgress?: (done: number, total: number) => void, sizes?: number[]): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    if (this.direct) {
      const paths = checksums.map((c) => join(this.repo.path, 'objects', c.slice(0, 2), `${c.slice(2)}.file`));
      const digests = await fsverityDigestFiles(paths, { ...(sizes ? { sizes } : {}), ...(onProgress ? { onProgress } : {}) });
      checksums.forEach((c, i) => out.set(c, digests[i]!));
      return out;
    }
    let next = 0;
    let done = 0;
    const lanes = 1; // one libostree repo handle is used from one thread
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
