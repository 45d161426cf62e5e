/**
 * fs-verity digests of ostree content objects. In bare, bare-user and bare-user-only repositories a
 * regular file's payload is the loose object file itself, so worker threads hash it straight from
 * disk, in batches, from the moment it is added (while the caller goes on walking the commit);
 * archive repositories decompress through libostree, one object at a time, in finish().
 */
import type { Repo } from '../../ostree/repo.js';
import { FileDigestQueue, fsverityDigestStream } from '../fsverity.js';

/** The bare loose path of a content object, relative to `objects/`. */
export const payloadPathOf = (checksum: string): string => `${checksum.slice(0, 2)}/${checksum.slice(2)}.file`;

export class FileDigests {
  private readonly queue: FileDigestQueue | undefined;
  /** Each added checksum, in the order added (= the queue's order). */
  private readonly order: string[] = [];
  private readonly seen = new Set<string>();

  constructor(
    private readonly repo: Repo,
    private readonly onProgress?: (done: number, total: number) => void,
  ) {
    this.queue = repo.loosePayloads ? new FileDigestQueue(onProgress ? { onProgress } : {}) : undefined;
  }

  /** Add a regular-file content object whose payload has `size` bytes (once per checksum). */
  add(checksum: string, size: number): void {
    if (this.seen.has(checksum)) return;
    this.seen.add(checksum);
    this.order.push(checksum);
    this.queue?.add(this.repo.loosePayloadPath(checksum)!, size);
  }

  /** The digest of every added object, by checksum; the first failure is thrown. */
  async finish(): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    if (this.queue) {
      const digests = await this.queue.finish();
      this.order.forEach((c, i) => out.set(c, digests[i]!));
      return out;
    }
    // One libostree repo handle is used from one thread: one object after the other.
    for (const c of this.order) {
      const f = this.repo.readFile(c);
      if (!f.stream) throw new Error(`content object ${c} has no payload`);
      out.set(c, await fsverityDigestStream(f.stream));
      this.onProgress?.(out.size, this.order.length);
    }
    return out;
  }
}
