/**
 * A composefs repository in the layout composefs-rs (`cfsctl`, bootc's composefs backend) uses
 * (shared/specs/composefs-format.md §10.8; composefs-rs `doc/repository.md`):
 *
 * ```
 * REPO/meta.json                 {"version":1,"algorithm":"fsverity-sha256-12","features":{…}}
 * REPO/objects/hh/<62 hex>       content named by its fs-verity SHA-256 digest
 * REPO/images/<64 hex>         → ../objects/hh/<rest>        EROFS images (the only mountable objects)
 * REPO/images/refs/<name>      → ../<64 hex> (relative)      GC roots
 * REPO/streams/<content-id>    → ../objects/hh/<rest>        splitstreams (oci-manifest-…, oci-layer-…)
 * REPO/streams/refs/<name>     → ../../<content-id>          GC roots, e.g. refs/oci/<tag>
 * ```
 *
 * Objects are written to a temporary file under `REPO/.ostree-oci-tmp/` (named after the writing
 * process) and renamed into place only once their digest is known and checked, so a killed writer
 * never leaves a half-written object; its temporaries are removed by the next writer or `gc`.
 * composefs-rs ignores that directory (it only walks `objects/00`…`objects/ff`).
 *
 * fs-verity is not enabled on the files (the filesystem may not support it): `meta.json` without
 * fs-verity is how composefs-rs recognises an "insecure" repository, in which it does not require
 * verity on objects. Digests are always computed in userspace.
 */
import { execFile } from 'node:child_process';
import { constants as FS, readdirSync, rmSync } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { CfsBusyError, CfsRepoError } from './errors.js';
import { onInterrupt } from '../cleanup.js';

export const CFS_ALGORITHM = 'fsverity-sha256-12';
export const CFS_FORMAT_VERSION = 1;
export const META_JSON = 'meta.json';
/** Where temporary files live while objects are written (ignored by composefs tools). */
export const TMP_DIR = '.ostree-oci-tmp';
/** Hex digits of a SHA-256 fs-verity digest. */
export const DIGEST_HEX_LEN = 64;

const HEX_RE = /^[0-9a-f]{64}$/;
export const isDigestHex = (s: string): boolean => HEX_RE.test(s);

export interface CfsMeta {
  version: number;
  algorithm: string;
  features: { compatible: string[]; 'read-only-compatible': string[]; incompatible: string[] };
}

/** The `meta.json` composefs-rs writes (serde_json pretty-printed, trailing newline). */
export function defaultMeta(): CfsMeta {
  return { version: CFS_FORMAT_VERSION, algorithm: CFS_ALGORITHM, features: { compatible: [], 'read-only-compatible': [], incompatible: [] } };
}

export function metaJsonBytes(meta: CfsMeta = defaultMeta()): Buffer {
  return Buffer.from(`${JSON.stringify(meta, null, 2)}\n`);
}

function parseMeta(text: string, where: string): CfsMeta {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new CfsRepoError(`${where}: not valid JSON (${(e as Error).message})`);
  }
  const o = m as Partial<CfsMeta> | null;
  if (!o || typeof o !== 'object' || typeof o.version !== 'number' || typeof o.algorithm !== 'string') {
    throw new CfsRepoError(`${where}: expected an object with "version" and "algorithm"`);
  }
  if (o.version > CFS_FORMAT_VERSION) throw new CfsRepoError(`${where}: repository format version ${o.version} is newer than ${CFS_FORMAT_VERSION}`);
  if (o.algorithm !== CFS_ALGORITHM) {
    throw new CfsRepoError(`${where}: algorithm "${o.algorithm}" is not supported (only ${CFS_ALGORITHM})`, { algorithm: o.algorithm });
  }
  const incompat = o.features?.incompatible ?? [];
  if (incompat.length) throw new CfsRepoError(`${where}: unknown incompatible features: ${incompat.join(', ')}`);
  const ro = o.features?.['read-only-compatible'] ?? [];
  return {
    version: o.version,
    algorithm: o.algorithm,
    features: { compatible: o.features?.compatible ?? [], 'read-only-compatible': ro, incompatible: [] },
  };
}

const isAlive = (pid: number): boolean => {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

const pidOf = (name: string): number | null => {
  const m = /^(?:writer-|gc-)?(\d+)[.-]/.exec(name) ?? /^(?:writer-|gc-)(\d+)$/.exec(name);
  return m ? Number(m[1]) : null;
};

export class CfsRepo {
  private tmpCounter = 0;
  private interruptWatched = false;
  readonly readOnly: boolean;

  private constructor(
    readonly path: string,
    readonly meta: CfsMeta,
  ) {
    this.readOnly = meta.features['read-only-compatible'].length > 0;
  }

  /** Open an existing repository (meta.json must be there and name fsverity-sha256-12). */
  static async open(path: string): Promise<CfsRepo> {
    const p = resolve(path);
    const st = await lstat(p).catch(() => null);
    if (!st) throw new CfsRepoError(`composefs repository ${path} does not exist`);
    if (!st.isDirectory()) throw new CfsRepoError(`composefs repository ${path} is not a directory`);
    let text: string;
    try {
      text = await readFile(join(p, META_JSON), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new CfsRepoError(`${path} is not a composefs repository (no ${META_JSON})`);
      }
      throw new CfsRepoError(`cannot read ${join(path, META_JSON)}: ${(e as Error).message}`);
    }
    return new CfsRepo(p, parseMeta(text, join(path, META_JSON)));
  }

  /** Open `path`, creating the repository (directory and meta.json) when it does not exist. */
  static async init(path: string): Promise<CfsRepo> {
    const p = resolve(path);
    const st = await lstat(p).catch(() => null);
    if (st && !st.isDirectory()) throw new CfsRepoError(`composefs repository ${path} is not a directory`);
    if (!st) await mkdir(p, { recursive: true, mode: 0o700 });
    const metaPath = join(p, META_JSON);
    if (!(await lstat(metaPath).catch(() => null))) {
      // A repository that has objects but no meta.json predates meta.json (old SHA-512 default):
      // refuse rather than silently declaring it SHA-256.
      if (await lstat(join(p, 'objects')).catch(() => null)) {
        throw new CfsRepoError(`${path} has objects/ but no ${META_JSON} (an old-format repository); not touching it`);
      }
      // Any other non-empty directory is not ours to turn into a repository (a mistyped --to).
      if (st && (await readdir(p)).length > 0) {
        throw new CfsRepoError(`${path} is not empty and is not a composefs repository (no ${META_JSON}); not touching it`);
      }
      const tmp = join(p, `.${META_JSON}.tmp-${process.pid}`);
      const fh = await open(tmp, 'w', 0o644);
      try {
        await fh.writeFile(metaJsonBytes());
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, metaPath);
    }
    return CfsRepo.open(p);
  }

  /** `objects/hh/rest` relative to the repository. */
  objectRel(hex: string): string {
    return `objects/${hex.slice(0, 2)}/${hex.slice(2)}`;
  }

  objectPath(hex: string): string {
    return join(this.path, 'objects', hex.slice(0, 2), hex.slice(2));
  }

  /** Is there a regular file for object `hex`? */
  async hasObject(hex: string): Promise<boolean> {
    const st = await lstat(this.objectPath(hex)).catch(() => null);
    return Boolean(st?.isFile());
  }

  get tmpDir(): string {
    return join(this.path, TMP_DIR);
  }

  /**
   * An interruption (SIGINT…, src/cleanup.ts) removes this process's temporaries: every entry of
   * `.ostree-oci-tmp/` named after its pid (temporary files, scratch directories, lock files).
   */
  private removeTempsOnInterrupt(): void {
    if (this.interruptWatched) return;
    this.interruptWatched = true;
    const tmp = this.tmpDir;
    onInterrupt(() => {
      let names: string[] = [];
      try {
        names = readdirSync(tmp);
      } catch {
        return;
      }
      for (const name of names) if (pidOf(name) === process.pid) rmSync(join(tmp, name), { recursive: true, force: true });
    });
  }

  /** A new exclusive temporary file under `.ostree-oci-tmp/` (named after this process). */
  async tempFile(): Promise<{ path: string; fh: FileHandle }> {
    this.removeTempsOnInterrupt();
    await mkdir(this.tmpDir, { recursive: true });
    for (;;) {
      const path = join(this.tmpDir, `${process.pid}.${++this.tmpCounter}.${Math.random().toString(36).slice(2, 8)}.tmp`);
      try {
        return { path, fh: await open(path, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, 0o644) };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
  }

  /** A new temporary directory under `.ostree-oci-tmp/` (named after this process); see removeTemp. */
  async tempDir(kind: string): Promise<string> {
    this.removeTempsOnInterrupt();
    await mkdir(this.tmpDir, { recursive: true });
    const path = join(this.tmpDir, `${process.pid}.${++this.tmpCounter}.${kind}.tmp`);
    await rm(path, { recursive: true, force: true }); // a leftover of an earlier process of this pid
    await mkdir(path);
    return path;
  }

  /** Remove a temporary file or directory (nothing when it is gone). */
  async removeTemp(path: string): Promise<void> {
    await rm(path, { recursive: true, force: true });
  }

  /** Remove temporary files and lock files left by processes that no longer run. Returns the count. */
  async cleanStaleTemps(dryRun = false): Promise<number> {
    let n = 0;
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const pid = pidOf(name);
      if (pid !== null && isAlive(pid)) continue;
      n++;
      if (!dryRun) await rm(join(this.tmpDir, name), { force: true, recursive: true });
    }
    return n;
  }

  /** Temporary files present (any process). */
  async tempFiles(): Promise<string[]> {
    return (await readdir(this.tmpDir).catch(() => [] as string[])).filter((n) => n.endsWith('.tmp'));
  }

  private async liveLocks(kind: 'writer' | 'gc'): Promise<number[]> {
    const pids: number[] = [];
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const m = new RegExp(`^${kind}-(\\d+)$`).exec(name);
      if (!m) continue;
      const pid = Number(m[1]);
      if (pid !== process.pid && isAlive(pid)) pids.push(pid);
    }
    return pids;
  }

  private async takeLock(kind: 'writer' | 'gc', conflicting: 'writer' | 'gc'): Promise<() => Promise<void>> {
    if (this.readOnly) {
      throw new CfsRepoError(`${this.path}: read-only-compatible features ${this.meta.features['read-only-compatible'].join(', ')} forbid writing`);
    }
    this.removeTempsOnInterrupt();
    await mkdir(this.tmpDir, { recursive: true });
    const lock = join(this.tmpDir, `${kind}-${process.pid}`);
    const fh = await open(lock, 'w');
    await fh.close();
    const others = await this.liveLocks(conflicting);
    if (others.length) {
      await unlink(lock).catch(() => {});
      throw new CfsBusyError(`${this.path} is in use: ${conflicting === 'gc' ? 'garbage collection' : 'a writer'} runs as pid ${others.join(', ')}`);
    }
    return async () => {
      await unlink(lock).catch(() => {});
    };
  }

  /**
   * Register this process as a writer: refuses while `gc` runs, and removes what killed writers
   * left behind. Call the returned function when done.
   */
  async lockWriter(): Promise<() => Promise<void>> {
    const release = await this.takeLock('writer', 'gc');
    await this.cleanStaleTemps();
    return release;
  }

  /** Exclusive lock for garbage collection: refuses while any writer runs. */
  async lockGc(): Promise<() => Promise<void>> {
    const release = await this.takeLock('gc', 'writer');
    const gcs = await this.liveLocks('gc');
    if (gcs.length) {
      await release();
      throw new CfsBusyError(`${this.path} is in use: garbage collection runs as pid ${gcs.join(', ')}`);
    }
    return release;
  }

  /**
   * Flush the repository's filesystem (syncfs, via `sync -f`), the barrier composefs-rs puts
   * between writing objects and publishing the names that reference them.
   */
  async sync(): Promise<void> {
    await promisify(execFile)('sync', ['-f', this.path]).catch(() => {
      /* best effort: a failing sync must not fail the write (data is in the page cache) */
    });
  }
}
