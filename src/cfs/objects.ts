/**
 * The object store of a composefs repository: `objects/hh/<rest>` named by the fs-verity SHA-256
 * digest of the content.
 *
 * Every store goes through a temporary file that is renamed into place only after the digest was
 * computed (and, when known in advance, compared), so an object file is never half-written. An
 * object that is already there is **re-verified** (its digest recomputed) before it is counted as
 * reused; a mismatch is a `CfsCorruptObjectError`, never silently accepted or overwritten. Each
 * object is verified at most once per `ObjectStore` (i.e. per run).
 *
 * Small streams (≤ 1 MiB) are hashed in memory first, so content that is already stored is never
 * written again; larger ones are hashed while they are written to the temporary file.
 */
import { createReadStream } from 'node:fs';
import { mkdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { FsVerityHasher, fsverityDigest, fsverityDigestFile } from '../composefs/fsverity.js';
import { CfsCorruptObjectError, CfsDigestMismatchError, CfsRepoError } from './errors.js';
import type { CfsRepo } from './repository.js';

export interface StoreResult {
  hex: string;
  size: number;
  /** true: newly written; false: it was there already (and verified). */
  written: boolean;
}

export interface StoreStats {
  written: number;
  reused: number;
  bytesWritten: number;
  bytesReused: number;
}

export type ByteStream = Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

const MEMORY_LIMIT = 1 << 20;

async function writeAll(fh: FileHandle, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

export class ObjectStore {
  /** Objects verified or written by this store (not re-hashed again). */
  private readonly known = new Map<string, number>();
  /** Objects being stored right now, so concurrent stores of one object share the work. */
  private readonly pending = new Map<string, Promise<StoreResult>>();
  readonly stats: StoreStats = { written: 0, reused: 0, bytesWritten: 0, bytesReused: 0 };

  constructor(readonly repo: CfsRepo) {}

  private count(r: StoreResult): StoreResult {
    if (r.written) {
      this.stats.written++;
      this.stats.bytesWritten += r.size;
    } else {
      this.stats.reused++;
      this.stats.bytesReused += r.size;
    }
    return r;
  }

  /**
   * Recompute the digest of stored object `hex`; returns its size. Throws
   * `CfsCorruptObjectError` when the digest differs from the name (or the file is unreadable).
   */
  async verifyExisting(hex: string): Promise<number> {
    const cached = this.known.get(hex);
    if (cached !== undefined) return cached;
    const path = this.repo.objectPath(hex);
    let actual: string;
    let size: number;
    try {
      size = (await stat(path)).size;
      actual = (await fsverityDigestFile(path)).toString('hex');
    } catch (e) {
      throw new CfsCorruptObjectError(path, hex, null, (e as Error).message);
    }
    if (actual !== hex) throw new CfsCorruptObjectError(path, hex, actual);
    this.known.set(hex, size);
    return size;
  }

  private async publish(tmp: string, hex: string, size: number): Promise<StoreResult> {
    const final = this.repo.objectPath(hex);
    // Someone (another writer) may have stored it meanwhile: then keep theirs after verifying.
    if (await this.repo.hasObject(hex)) {
      await unlink(tmp).catch(() => {});
      await this.verifyExisting(hex);
      return { hex, size, written: false };
    }
    await mkdir(dirname(final), { recursive: true });
    await rename(tmp, final);
    this.known.set(hex, size);
    return { hex, size, written: true };
  }

  private async writeBufferObject(hex: string, parts: Uint8Array[]): Promise<StoreResult> {
    const { path, fh } = await this.repo.tempFile();
    let size = 0;
    try {
      for (const p of parts) {
        await writeAll(fh, p);
        size += p.length;
      }
      await fh.close();
    } catch (e) {
      await fh.close().catch(() => {});
      await unlink(path).catch(() => {});
      throw e;
    }
    try {
      return await this.publish(path, hex, size);
    } catch (e) {
      await unlink(path).catch(() => {});
      throw e;
    }
  }

  /**
   * Store content whose digest is known in advance (`hex`): when the object exists it is verified
   * and `open` is never called; otherwise the content is copied through a temporary file, hashed on
   * the way and compared with `hex` (`CfsDigestMismatchError` naming `what` when it differs).
   */
  async storeKnown(hex: string, open: () => ByteStream | Promise<ByteStream>, what = `object ${hex}`): Promise<StoreResult> {
    const p = this.pending.get(hex);
    if (p) return p.then((r) => this.count({ ...r, written: false }));
    const job = (async (): Promise<StoreResult> => {
      if (this.known.has(hex) || (await this.repo.hasObject(hex))) {
        const size = await this.verifyExisting(hex);
        return { hex, size, written: false };
      }
      // A failing write (ENOSPC, EIO…) is named by object and repository; read errors of the
      // source keep their own (the caller names the source).
      const written = <T>(p: Promise<T>): Promise<T> =>
        p.catch((e: NodeJS.ErrnoException) => {
          if (typeof e.code !== 'string') throw e;
          throw new CfsRepoError(`${what}: cannot write it into ${this.repo.path}: ${e.message}`, { code: e.code });
        });
      const { path, fh } = await written(this.repo.tempFile());
      const h = new FsVerityHasher();
      let src: ByteStream | undefined;
      try {
        src = await open();
        for await (const chunk of src as AsyncIterable<Uint8Array>) {
          h.update(chunk);
          await written(writeAll(fh, chunk));
        }
        await written(fh.close());
      } catch (e) {
        (src as Readable | undefined)?.destroy?.();
        await fh.close().catch(() => {});
        await unlink(path).catch(() => {});
        throw e;
      }
      const actual = h.digest().toString('hex');
      if (actual !== hex) {
        await unlink(path).catch(() => {});
        throw new CfsDigestMismatchError(`${what}: content has fs-verity digest ${actual}, expected ${hex}`, { expected: hex, actual, what });
      }
      try {
        return await written(this.publish(path, hex, h.length));
      } catch (e) {
        await unlink(path).catch(() => {});
        throw e;
      }
    })();
    this.pending.set(hex, job);
    try {
      return this.count(await job);
    } finally {
      this.pending.delete(hex);
    }
  }

  /** Store content of unknown digest (hashed on the way); returns its digest. */
  async storeStream(src: ByteStream): Promise<StoreResult> {
    const held: Uint8Array[] = [];
    let heldBytes = 0;
    const h = new FsVerityHasher();
    const it: AsyncIterator<Uint8Array> | Iterator<Uint8Array> =
      Symbol.asyncIterator in src ? (src as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]() : (src as Iterable<Uint8Array>)[Symbol.iterator]();
    let spilled: { path: string; fh: FileHandle } | undefined;
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        const chunk = r.value;
        h.update(chunk);
        if (!spilled) {
          held.push(chunk);
          heldBytes += chunk.length;
          if (heldBytes > MEMORY_LIMIT) {
            spilled = await this.repo.tempFile();
            for (const c of held) await writeAll(spilled.fh, c);
            held.length = 0;
          }
        } else {
          await writeAll(spilled.fh, chunk);
        }
      }
      if (spilled) await spilled.fh.close();
    } catch (e) {
      try {
        await it.return?.();
      } catch {
        /* report the original error */
      }
      if (spilled) {
        await spilled.fh.close().catch(() => {});
        await unlink(spilled.path).catch(() => {});
      }
      throw e;
    }
    const hex = h.digest().toString('hex');
    const size = h.length;
    if (!spilled) {
      if (this.known.has(hex) || (await this.repo.hasObject(hex))) {
        await this.verifyExisting(hex);
        return this.count({ hex, size, written: false });
      }
      return this.count(await this.writeBufferObject(hex, held));
    }
    if (this.known.has(hex)) {
      await unlink(spilled.path).catch(() => {});
      return this.count({ hex, size, written: false });
    }
    try {
      return this.count(await this.publish(spilled.path, hex, size));
    } catch (e) {
      await unlink(spilled.path).catch(() => {});
      throw e;
    }
  }

  /** Store a buffer (any size); returns its digest. */
  async storeBuffer(buf: Buffer): Promise<StoreResult> {
    const hex = fsverityDigest(buf).toString('hex');
    if (this.known.has(hex) || (await this.repo.hasObject(hex))) {
      await this.verifyExisting(hex);
      return this.count({ hex, size: buf.length, written: false });
    }
    return this.count(await this.writeBufferObject(hex, [buf]));
  }

  /** Read an object's bytes as a stream (no verification; see verifyExisting). */
  openObject(hex: string): Readable {
    return createReadStream(this.repo.objectPath(hex), { highWaterMark: 1 << 20 });
  }
}
