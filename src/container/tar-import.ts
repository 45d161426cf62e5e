/**
 * ostree-ext tar format reader (shared/specs/ostree-container-format.md §2), stricter than
 * upstream's importer:
 *
 *  - every object is re-hashed in TypeScript as it streams and written through libostree's
 *    verifying writes (`write_metadata` / `write_content` with the expected checksum: dirtrees,
 *    dirmetas and small files a few at a time on libuv threads, large files streamed through
 *    `Repo.writeContent`, the commit last through `Repo.writeMetadata`); an object that is already
 *    in the repository is hashed from the stream anyway *and* its stored copy is re-verified;
 *  - commit layer: the first object must be the `.commit`; a `.commitmeta` may only come right
 *    after it and must carry the commit's checksum; a second commit is an error;
 *  - object-set (chunk) layers: content and xattrs only;
 *  - xattrs: `.file-xattrs-link` as a regular file (current) or a hardlink to a `.file-xattrs`
 *    object (v1), v0 `xattrs/<sha256>` + `.file.xattrs` hardlinks, or PAX `SCHILY.xattr.*` records
 *    alone; when both a link and PAX records are present they must agree (except
 *    `security.selinux`, which ostree-ext leaves out of PAX);
 *  - every entry name and hardlink target is validated (no absolute paths, no `..`); a checkout
 *    hardlink must point at an object (or file) that came earlier in the same layer;
 *  - `finish()` walks the commit and requires every dirtree, dirmeta and content object to have
 *    been in the stream or to be in the repository (re-verified), and every object in the stream to
 *    be referenced by the commit; only then are the commit and its commitmeta written.
 *
 * The caller runs all of this inside one `repo.transaction`, so any error leaves nothing behind.
 */
import { ObjectType } from '../../ostree-bindings/index.js';
import { ObjectChecksumError, OstreeOciError } from '../errors.js';
import { checkLimit, DEFAULT_LIMITS, LimitError, resolveLimits, type ImportLimits } from '../limits.js';
import { OciError } from '../oci/errors.js';
import { crashPoint } from '../testhooks.js';
import { mergeCommitmeta, type CommitmetaMergeSummary } from '../sign/commit-signatures.js';
import { S_IFLNK, S_IFREG } from '../tree/model.js';
import type { VarDict } from '../gvariant/codec.js';
import {
  parseCommit,
  parseDirMeta,
  parseDirTree,
  parseMetadata,
  parseXattrsVariant,
  serializeMetadata,
  sortXattrs,
  type Commit,
  type DirTree,
  type FileHeader,
  type OstreeXattr,
} from '../gvariant/ostree-types.js';
import { ContentBatch, ContentHasher, contentPrefix, sha256Hex, SMALL_CONTENT } from '../ostree/checksum.js';
import { bareUserOnlyLosses, type Repo } from '../ostree/repo.js';
import { CommitVerificationError, ContainerFormatError, MissingObjectError } from './errors.js';
import { normalizeEntryPath, parseRepoPath, REPO_PREFIX } from './paths.js';
import { TarReader, type TarEntry } from './tar-reader.js';

/** ostree's OSTREE_MAX_METADATA_SIZE in 2022.7 (the default of `limits.maxMetadataSize`). */
export const MAX_METADATA_SIZE = DEFAULT_LIMITS.maxMetadataSize;
/**
 * libostree writes (metadata and small content objects) in flight at once, each from memory on a
 * libuv threadpool thread (koffi async); 3–4 wrote the minbase's objects faster than 2 here.
 * A large object is written from a pipe that this thread fills through fs writes, which need a
 * pool thread too; it starts only once at most one small write is left. Small writes never wait
 * on this thread, so only the large write's pool thread ever does, and the fs writes that fill
 * its pipe (and the layer's reads, and gzip) always find a free one.
 */
const MAX_INFLIGHT_WRITES = 3;
const SELINUX = 'security.selinux';

export type LayerMode = 'commit' | 'object-set';

export interface ImportStats {
  layers: number;
  dirtree: number;
  dirmeta: number;
  /** Content objects written from the stream. */
  filesWritten: number;
  /** Content objects in the stream that were already in the repository (both verified). */
  filesAlreadyPresent: number;
  /** Objects referenced by the commit but in no layer, found (and re-verified) in the repository. */
  objectsFromRepo: number;
  /** Payload bytes of content objects in the stream. */
  contentBytes: number;
}

export interface ImportProgress {
  layer: number;
  what: string;
  objects: number;
  contentBytes: number;
}

export interface CommitImporterOptions {
  /** The commit must have this checksum (checked as soon as the `.commit` entry is read). */
  verifyCommit?: string;
  /** Fail unless the commit layer carries a `.commitmeta`. */
  requireCommitmeta?: boolean;
  /** Caps (src/limits.ts); unset ones come from OSTREE_OCI_LIMITS and the defaults. */
  limits?: Partial<ImportLimits>;
  onProgress?: (p: ImportProgress) => void;
}

export interface ImportedCommit {
  checksum: string;
  commit: Commit;
  /** Detached metadata bytes from the stream (null when the image had none). */
  commitmeta: Buffer | null;
  /**
   * When the repository already had commitmeta for this commit and the image's differs: what the
   * merge added and which stored values it kept (see mergeCommitmeta).
   */
  commitmetaMerge?: CommitmetaMergeSummary;
  stats: ImportStats;
}

/** Human-readable notes on a commitmeta merge (nothing when the image's commitmeta was stored as is). */
export function commitmetaMergeNotes(commit: string, m: ImportedCommit['commitmetaMerge']): string[] {
  if (!m) return [];
  const notes: string[] = [];
  if (m.added.length) notes.push(`commitmeta of ${commit}: the image added ${m.added.join(', ')} to the detached metadata already stored`);
  if (m.kept.length) notes.push(`commitmeta of ${commit}: kept the stored ${m.kept.join(', ')}; the image's value differs`);
  if (!m.added.length && !m.kept.length) notes.push(`commitmeta of ${commit}: the stored detached metadata already has everything the image's has`);
  return notes;
}

interface PendingXattrs {
  file: string;
  xattrs: OstreeXattr[];
  where: string;
}

function xattrsKey(xs: OstreeXattr[]): string {
  return xs.map((x) => `${x.name.toString('hex')}=${x.value.toString('hex')}`).join(',');
}

/** Wrap a non-typed failure (libostree, GVariant) with the layer and path it happened at. */
function withContext(e: unknown, where: string, type?: string, checksum?: string): Error {
  if (e instanceof ObjectChecksumError) return new ObjectChecksumError(type ?? e.objectType, e.expected, e.actual, where);
  if (e instanceof ContainerFormatError || e instanceof MissingObjectError) return e;
  // Typed errors of the input stream (blob digest/size, diffid, decompression, a cap) name their
  // layer and cause already.
  if (e instanceof LimitError || e instanceof OciError) return e;
  const msg = (e as Error)?.message ?? String(e);
  return new ContainerFormatError(`${where}: ${msg}`, { path: where, ...(checksum ? { checksum } : {}), cause: msg });
}

export class CommitImporter {
  private commitChecksum: string | null = null;
  private commitBytes: Buffer | null = null;
  private commit: Commit | null = null;
  private commitmetaBytes: Buffer | null = null;
  /** commitmetaBytes, parsed (once, when read). */
  private commitmetaDict: VarDict | null = null;
  /** Metadata objects from the stream (verified), by checksum. */
  private readonly dirtrees = new Map<string, DirTree>();
  private readonly dirmetas = new Set<string>();
  /** Content objects from the stream (verified), by checksum. */
  private readonly content = new Set<string>();
  /** xattrs objects (`.file-xattrs`, v0 `xattrs/…`), by checksum of their bytes. */
  private readonly xattrsObjects = new Map<string, OstreeXattr[]>();
  /** Stored objects already re-verified in this import. */
  private readonly verifiedStored = new Set<string>();
  /** Content writes running on worker threads, and the first one that failed. */
  private readonly inflight = new Set<Promise<void>>();
  private writeError: Error | null = null;
  readonly stats: ImportStats = {
    layers: 0,
    dirtree: 0,
    dirmeta: 0,
    filesWritten: 0,
    filesAlreadyPresent: 0,
    objectsFromRepo: 0,
    contentBytes: 0,
  };

  private readonly limits: ImportLimits;

  constructor(
    private readonly repo: Repo,
    private readonly opts: CommitImporterOptions = {},
  ) {
    this.limits = resolveLimits(opts.limits);
  }

  get checksum(): string | null {
    return this.commitChecksum;
  }

  /**
   * Import one layer. `mode` is 'commit' for the ostree commit layer (must come first) and
   * 'object-set' for content chunks. `what` names the layer in errors.
   */
  async importLayer(input: AsyncIterable<Buffer>, mode: LayerMode, what: string): Promise<void> {
    if (mode === 'object-set' && !this.commitChecksum) {
      throw new ContainerFormatError(`${what}: content layer imported before the ostree commit layer`);
    }
    const r = new TarReader(input, what);
    const layerIndex = this.stats.layers++;
    let expectCommit = mode === 'commit';
    let afterCommit = false;
    let pending: PendingXattrs | null = null;
    const layerObjects = new Set<string>();
    const layerFiles = new Set<string>();
    let objects = 0;
    let lastProgress = 0;
    const progress = (): void => {
      const now = Date.now();
      if (!this.opts.onProgress || now - lastProgress < 100) return;
      lastProgress = now;
      this.opts.onProgress({ layer: layerIndex, what, objects, contentBytes: this.stats.contentBytes });
    };
    try {
      for (;;) {
        if (this.writeError) throw this.writeError;
        const e = await r.next();
        if (!e) break;
        checkLimit(this.limits, 'maxPathLength', Buffer.byteLength(e.path), `${what}: tar entry name ${JSON.stringify(e.path.slice(0, 200))}`);
        checkLimit(this.limits, 'maxPathLength', Buffer.byteLength(e.linkname), `${what}: link target of ${JSON.stringify(e.path.slice(0, 200))}`);
        const path = normalizeEntryPath(e.path, what);
        const at = `${what}: ${path || './'}`;
        if (e.type === '5') continue;
        if (!path.startsWith(REPO_PREFIX)) {
          this.checkCheckoutEntry(e, path, what, layerObjects, layerFiles);
          continue;
        }
        const p = parseRepoPath(path.slice(REPO_PREFIX.length), what);
        if (p.kind === 'config' || p.kind === 'refs' || p.kind === 'other') continue;
        if (expectCommit && !(p.kind === 'object' && p.type === 'commit')) {
          throw new ContainerFormatError(`${what}: commit object not found: the first object is ${path}`, { path });
        }
        const isCommitmeta = p.kind === 'object' && p.type === 'commitmeta';
        if (!isCommitmeta) afterCommit = false;
        objects++;
        if (p.kind === 'v0-xattrs') {
          const bytes = await this.readRegular(r, e, at, 'maxXattrsSize');
          const actual = sha256Hex(bytes);
          if (actual !== p.checksum) throw new ObjectChecksumError('xattrs', p.checksum, actual, at);
          this.xattrsObjects.set(p.checksum, parseXattrsVariant(bytes, at));
          continue;
        }
        const csum = p.checksum;
        switch (p.type) {
          case 'commit': {
            if (mode === 'object-set') throw new ContainerFormatError(`${at}: commit object in a content (object-set) layer`, { path });
            if (this.commitChecksum) {
              throw new ContainerFormatError(`${at}: found multiple commit objects (${this.commitChecksum} and ${csum})`, { path });
            }
            const bytes = await this.readRegular(r, e, at, 'maxMetadataSize');
            const actual = sha256Hex(bytes);
            if (actual !== csum) throw new ObjectChecksumError('commit', csum, actual, at);
            const commit = parseCommit(bytes, `commit ${csum}`);
            if (this.opts.verifyCommit && this.opts.verifyCommit !== csum) {
              throw new CommitVerificationError(`${what}: image holds commit ${csum}, expected ${this.opts.verifyCommit}`, {
                expected: this.opts.verifyCommit,
                actual: csum,
              });
            }
            this.commitChecksum = csum;
            this.commitBytes = bytes;
            this.commit = commit;
            expectCommit = false;
            afterCommit = true;
            break;
          }
          case 'commitmeta': {
            if (mode === 'object-set') throw new ContainerFormatError(`${at}: commitmeta object in a content (object-set) layer`, { path });
            if (!afterCommit) {
              throw new ContainerFormatError(`${at}: a .commitmeta must directly follow its .commit object`, { path });
            }
            afterCommit = false;
            if (csum !== this.commitChecksum) {
              throw new CommitVerificationError(
                `${at}: .commitmeta is for commit ${csum}, but the image's commit is ${this.commitChecksum}`,
                { path, commitmetaFor: csum, commit: this.commitChecksum },
              );
            }
            const bytes = await this.readRegular(r, e, at, 'maxMetadataSize');
            this.commitmetaDict = parseMetadata(bytes, `commitmeta of ${csum} (${at})`);
            this.commitmetaBytes = bytes;
            break;
          }
          case 'dirtree':
          case 'dirmeta': {
            if (mode === 'object-set') {
              throw new ContainerFormatError(`${at}: metadata object ${csum}.${p.type} in a content (object-set) layer`, { path });
            }
            const bytes = await this.readRegular(r, e, at, 'maxMetadataSize');
            await this.importMetadata(p.type === 'dirtree' ? ObjectType.DIR_TREE : ObjectType.DIR_META, csum, bytes, at);
            break;
          }
          case 'file-xattrs': {
            const bytes = await this.readRegular(r, e, at, 'maxXattrsSize');
            const actual = sha256Hex(bytes);
            if (actual !== csum) throw new ObjectChecksumError('file-xattrs', csum, actual, at);
            this.xattrsObjects.set(csum, parseXattrsVariant(bytes, at));
            break;
          }
          case 'file-xattrs-link':
          case 'file.xattrs': {
            if (pending) {
              throw new ContainerFormatError(`${at}: xattrs for ${csum} while those for ${pending.file} (${pending.where}) were not used`, { path });
            }
            let xattrs: OstreeXattr[];
            if (e.type === '1') {
              const xcsum = this.xattrsLinkTarget(e.linkname, p.type, at);
              const found = this.xattrsObjects.get(xcsum);
              if (!found) throw new ContainerFormatError(`${at}: hardlink to xattrs object ${xcsum}, which is not earlier in the stream`, { path });
              xattrs = found;
            } else if (p.type === 'file-xattrs-link' && e.type === '0') {
              xattrs = parseXattrsVariant(await this.readRegular(r, e, at, 'maxXattrsSize'), at);
            } else {
              throw new ContainerFormatError(`${at}: unexpected entry type '${e.type}' for an xattrs reference`, { path });
            }
            pending = { file: csum, xattrs, where: path };
            break;
          }
          case 'file': {
            let xattrs: OstreeXattr[];
            const paxXattrs = this.paxXattrs(e, at);
            if (pending) {
              if (pending.file !== csum) {
                throw new ContainerFormatError(`${at}: object mismatch: the preceding xattrs (${pending.where}) are for ${pending.file}`, { path });
              }
              xattrs = pending.xattrs;
              pending = null;
              if (paxXattrs) {
                const fromLink = xattrs.filter((x) => x.name.toString() !== SELINUX);
                if (xattrsKey(sortXattrs(fromLink, at)) !== xattrsKey(paxXattrs)) {
                  throw new ContainerFormatError(`${at}: PAX SCHILY.xattr records disagree with the object's .file-xattrs-link`, { path });
                }
              }
            } else {
              xattrs = paxXattrs ?? [];
            }
            await this.importContent(r, e, csum, xattrs, at);
            layerObjects.add(csum);
            break;
          }
          default:
            throw new ContainerFormatError(`${at}: unexpected object type`, { path });
        }
        progress();
        crashPoint();
      }
      if (pending) throw new ContainerFormatError(`${what}: dangling xattrs reference ${pending.where} (no object follows)`);
      if (expectCommit) throw new ContainerFormatError(`${what}: commit object not found in the ostree commit layer`);
      await this.writeStaged();
      await this.drainWrites();
    } catch (e) {
      this.staged.clear();
      // Never leave a libostree write running: the caller aborts the transaction next.
      await this.drainWrites().catch(() => {});
      await r.close().catch(() => {});
      throw this.writeError ?? e;
    }
    this.opts.onProgress?.({ layer: layerIndex, what, objects, contentBytes: this.stats.contentBytes });
  }

  /** Validate a checkout entry (outside `sysroot/ostree/repo/`). */
  private checkCheckoutEntry(e: TarEntry, path: string, what: string, layerObjects: Set<string>, layerFiles: Set<string>): void {
    if (e.type === '1') {
      const target = normalizeEntryPath(e.linkname, what, `hardlink target of ${path}`);
      if (target.startsWith(REPO_PREFIX)) {
        const t = parseRepoPath(target.slice(REPO_PREFIX.length), what);
        if (t.kind === 'object' && t.type === 'file' && layerObjects.has(t.checksum)) return;
      } else if (layerFiles.has(target)) {
        return;
      }
      throw new ContainerFormatError(`${what}: hardlink ${path} → ${target}: the target is not in this layer's stream`, {
        path,
        target,
      });
    }
    if (e.type === '0' || e.type === '2') layerFiles.add(path);
  }

  /** The xattrs checksum named by a `.file-xattrs-link` / `.file.xattrs` hardlink target. */
  private xattrsLinkTarget(linkname: string, type: string, at: string): string {
    const parts = linkname.split('/').filter((s) => s !== '' && s !== '.');
    if (type === 'file.xattrs') {
      const name = parts[parts.length - 1] ?? '';
      if (parts[parts.length - 2] !== 'xattrs' || !/^[0-9a-f]{64}$/.test(name)) {
        throw new ContainerFormatError(`${at}: invalid v0 xattrs link target ${JSON.stringify(linkname)}`);
      }
      return name;
    }
    const dir = parts[parts.length - 2] ?? '';
    const name = parts[parts.length - 1] ?? '';
    const m = /^([0-9a-f]{62})\.file-xattrs$/.exec(name);
    if (!m || !/^[0-9a-f]{2}$/.test(dir)) throw new ContainerFormatError(`${at}: invalid xattrs link target ${JSON.stringify(linkname)}`);
    return dir + m[1];
  }

  /** `SCHILY.xattr.*` PAX records of an entry, sorted; null when there are none. */
  private paxXattrs(e: TarEntry, at: string): OstreeXattr[] | null {
    const xs: OstreeXattr[] = [];
    let size = 0;
    for (const [k, v] of e.pax) {
      if (k.startsWith('SCHILY.xattr.')) {
        xs.push({ name: Buffer.from(k.slice('SCHILY.xattr.'.length), 'utf8'), value: v });
        size += Buffer.byteLength(k) - 'SCHILY.xattr.'.length + v.length;
      }
    }
    checkLimit(this.limits, 'maxXattrsSize', size, `${at}: PAX SCHILY.xattr records`);
    return xs.length ? sortXattrs(xs, at) : null;
  }

  private async readRegular(r: TarReader, e: TarEntry, at: string, cap: 'maxMetadataSize' | 'maxXattrsSize'): Promise<Buffer> {
    if (e.type !== '0') {
      throw new ContainerFormatError(`${at}: expected a regular file entry, found type '${e.type}'`, { path: e.path });
    }
    checkLimit(this.limits, cap, e.size, `${at}: object size`);
    return r.readBody(this.limits[cap]);
  }

  /** A dirtree's entry count must be within maxDirEntries. */
  private checkDirTree(t: DirTree, where: string): DirTree {
    checkLimit(this.limits, 'maxDirEntries', t.files.length + t.dirs.length, `${where}: directory entries`);
    return t;
  }

  private async importMetadata(type: ObjectType.DIR_TREE | ObjectType.DIR_META, csum: string, bytes: Buffer, at: string): Promise<void> {
    const name = type === ObjectType.DIR_TREE ? 'dirtree' : 'dirmeta';
    const actual = sha256Hex(bytes);
    if (actual !== csum) throw new ObjectChecksumError(name, csum, actual, at);
    if (type === ObjectType.DIR_TREE) {
      if (this.dirtrees.has(csum)) return;
      this.dirtrees.set(csum, this.checkDirTree(parseDirTree(bytes, `dirtree ${csum} (${at})`), `dirtree ${csum} (${at})`));
      this.stats.dirtree++;
    } else {
      if (this.dirmetas.has(csum)) return;
      parseDirMeta(bytes, `dirmeta ${csum} (${at})`);
      this.dirmetas.add(csum);
      this.stats.dirmeta++;
    }
    try {
      if (this.repo.hasObject(type, csum)) {
        this.verifyStoredMetadata(type, csum, at);
        return;
      }
    } catch (e) {
      throw withContext(e, at, name, csum);
    }
    // Hashed above; libostree validates and hashes again on a worker thread, like content.
    await this.queueWrite(name, csum, () => this.repo.native.writeMetadataInBackground(type, csum, bytes), at);
  }

  /** A content object a bare-user-only repository cannot store is refused (bareUserOnlyLosses). */
  private checkBareUserOnly(h: FileHeader, csum: string, at: string): void {
    const lost = bareUserOnlyLosses(h);
    if (!lost.length) return;
    throw new ContainerFormatError(
      `${at}: file object ${csum} has ${lost.join(', ')}, which a bare-user-only repository (${this.repo.path}) cannot store; import into a bare-user repository`,
      { path: at, checksum: csum },
    );
  }

  /** Re-hash a metadata object already in the repository. */
  private verifyStoredMetadata(type: ObjectType, csum: string, where: string): Buffer {
    const name = ObjectType[type]!.toLowerCase().replace('_', '');
    const stored = this.repo.loadMetadataBytes(type, csum);
    const actual = sha256Hex(stored);
    if (actual !== csum) throw new ObjectChecksumError(name, csum, actual, `${where} (copy already in ${this.repo.path})`);
    this.verifiedStored.add(`${type}:${csum}`);
    return stored;
  }

  private async verifyStoredFile(csum: string, where: string): Promise<void> {
    const key = `${ObjectType.FILE}:${csum}`;
    if (this.verifiedStored.has(key)) return;
    const actual = await this.repo.checksumStoredFile(csum);
    if (actual !== csum) throw new ObjectChecksumError('file', csum, actual, `${where} (copy already in ${this.repo.path})`);
    this.verifiedStored.add(key);
  }

  private async importContent(r: TarReader, e: TarEntry, csum: string, xattrs: OstreeXattr[], at: string): Promise<void> {
    let header: FileHeader;
    if (e.type === '0') {
      header = { uid: e.uid, gid: e.gid, mode: S_IFREG | (e.mode & 0o7777), rdev: 0, symlinkTarget: '', xattrs };
    } else if (e.type === '2') {
      if (e.linkname === '') throw new ContainerFormatError(`${at}: symlink object with an empty target`, { path: e.path });
      header = { uid: e.uid, gid: e.gid, mode: S_IFLNK | (e.mode & 0o7777), rdev: 0, symlinkTarget: e.linkname, xattrs };
    } else {
      throw new ContainerFormatError(`${at}: invalid tar entry type '${e.type}' for a content object`, { path: e.path });
    }
    if (this.repo.mode === 'bare-user-only') this.checkBareUserOnly(header, csum, at);
    const size = e.type === '2' ? 0 : e.size;
    this.stats.contentBytes += size;
    const known = this.content.has(csum);
    if (known || this.repo.hasObject(ObjectType.FILE, csum)) {
      // Already have it: the stream's copy must still hash to its name, and a stored copy is re-verified.
      const h = new ContentHasher(header);
      if (size) for await (const chunk of r.body()) h.update(chunk);
      const actual = h.digest();
      if (actual !== csum) throw new ObjectChecksumError('file', csum, actual, at);
      if (!known) {
        await this.verifyStoredFile(csum, at);
        this.stats.filesAlreadyPresent++;
        this.content.add(csum);
      }
      return;
    }
    if (size <= SMALL_CONTENT) {
      // Verified in TypeScript first, in batches (nothing is written for a bad object), then
      // libostree writes (and verifies again) on a worker thread while the next entries are parsed.
      const payload = size ? await r.readBody(SMALL_CONTENT) : Buffer.alloc(0);
      await this.stageContent(csum, contentPrefix(header), payload, at);
    } else {
      while (this.inflight.size > 1) await Promise.race(this.inflight);
      // When the layer stream fails mid-object (digest, diffid, a cap), libostree only sees a short
      // read: report the stream's own error, which names the real cause.
      const body = r.bodyStream();
      let inputError: unknown;
      body.on('error', (e) => (inputError ??= e));
      try {
        await this.repo.writeContent(csum, { header, payload: { stream: body, length: size } });
      } catch (err) {
        throw withContext(inputError ?? err, at, 'file', csum);
      }
    }
    this.content.add(csum);
    this.stats.filesWritten++;
  }

  /**
   * maxTreeDepth and maxPathLength over every path of the commit's tree. Dirtrees are shared
   * (a DAG), so the deepest and the longest path below each one are computed once, bottom-up.
   */
  private checkTreeShape(csum: string, rootTree: string): void {
    interface Shape {
      depth: number;
      len: number;
      deepVia?: [string, string];
      longVia?: [string, string];
    }
    const shape = new Map<string, Shape>();
    const stack: Array<{ tree: string; expanded: boolean }> = [{ tree: rootTree, expanded: false }];
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      if (shape.has(top.tree)) {
        stack.pop();
        continue;
      }
      const t = this.dirtrees.get(top.tree)!;
      if (!top.expanded) {
        top.expanded = true;
        for (const sub of t.dirs) if (!shape.has(sub.tree)) stack.push({ tree: sub.tree, expanded: false });
        continue;
      }
      stack.pop();
      const s: Shape = { depth: 0, len: 0 };
      for (const f of t.files) {
        const len = 1 + Buffer.byteLength(f.name);
        if (len > s.len) Object.assign(s, { len, longVia: [f.name, ''] });
      }
      for (const sub of t.dirs) {
        const c = shape.get(sub.tree)!;
        const len = 1 + Buffer.byteLength(sub.name) + c.len;
        if (len > s.len) Object.assign(s, { len, longVia: [sub.name, sub.tree] });
        if (c.depth + 1 > s.depth) Object.assign(s, { depth: c.depth + 1, deepVia: [sub.name, sub.tree] });
      }
      shape.set(top.tree, s);
    }
    const follow = (key: 'deepVia' | 'longVia'): string => {
      let p = '';
      let via = shape.get(rootTree)![key];
      while (via && p.length < 300) {
        p += `/${via[0]}`;
        via = via[1] ? shape.get(via[1])![key] : undefined;
      }
      return p.length >= 300 ? `${p.slice(0, 300)}…` : p;
    };
    const root = shape.get(rootTree)!;
    if (root.depth > this.limits.maxTreeDepth) checkLimit(this.limits, 'maxTreeDepth', root.depth, `commit ${csum}: directory ${follow('deepVia')} nesting depth`);
    if (root.len > this.limits.maxPathLength) checkLimit(this.limits, 'maxPathLength', root.len, `commit ${csum}: path ${follow('longVia')} length`);
  }

  /**
   * Small content objects waiting to be verified (ContentBatch), when the batch is full and at the
   * end of each layer; only then are their writes queued.
   */
  private readonly staged = new ContentBatch<string>();

  private async stageContent(csum: string, prefix: Buffer, payload: Buffer, at: string): Promise<void> {
    if (!this.staged.fits(prefix.length + payload.length)) await this.writeStaged();
    this.staged.add(csum, prefix, payload, at);
  }

  /**
   * Verify every staged object, then queue their writes. Each write copies its bytes when it
   * starts, and all have started when this returns: the batch's buffer may then be reused.
   */
  private async writeStaged(): Promise<void> {
    const checked = this.staged.take();
    for (const x of checked) if (x.actual !== x.expected) throw new ObjectChecksumError('file', x.expected, x.actual, x.tag);
    for (const x of checked) await this.queueWrite('file', x.expected, () => this.repo.native.writeContentInBackground(x.expected, x.bytes), x.tag);
  }

  /** Start a verifying libostree write (`start`) of an object; at most a few run at once. */
  private async queueWrite(type: string, csum: string, start: () => Promise<string>, at: string): Promise<void> {
    while (this.inflight.size >= MAX_INFLIGHT_WRITES) await Promise.race(this.inflight);
    if (this.writeError) throw this.writeError;
    const p: Promise<void> = new Promise<string>((resolve) => resolve(start()))
      .then((stored) => {
        if (stored !== csum) throw new ObjectChecksumError(type, csum, stored, at);
      })
      .catch((e: unknown) => {
        this.writeError ??= withContext(e, at, type, csum);
      })
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  /** Wait for every running write; throw the first write error. */
  private async drainWrites(): Promise<void> {
    while (this.inflight.size) await Promise.race(this.inflight);
    if (this.writeError) throw this.writeError;
  }

  /**
   * Check completeness and consistency, then write the commit and its detached metadata. Must run
   * inside the same transaction as the layer imports.
   */
  async finish(): Promise<ImportedCommit> {
    if (!this.commitChecksum || !this.commit || !this.commitBytes) {
      throw new ContainerFormatError('commit object not found: no ostree commit layer was imported');
    }
    const csum = this.commitChecksum;
    await this.drainWrites();
    if (this.opts.requireCommitmeta && !this.commitmetaBytes) {
      throw new CommitVerificationError(`commit ${csum} has no .commitmeta in the image (detached metadata required)`, { commit: csum });
    }
    if (this.opts.requireCommitmeta && this.commitmetaDict!.length === 0) {
      throw new CommitVerificationError(`commit ${csum} has an empty .commitmeta in the image (detached metadata required)`, { commit: csum });
    }
    const reachTrees = new Set<string>();
    const reachMetas = new Set<string>();
    const reachContent = new Set<string>();
    const missing = (kind: string, c: string, where: string): never => {
      throw new MissingObjectError(`${kind} object ${c} (${where}) of commit ${csum} is missing: it is in no layer of the image and not in ${this.repo.path}`, {
        objectType: kind,
        checksum: c,
        path: where,
        commit: csum,
      });
    };
    const loadTree = (c: string, where: string): DirTree => {
      const t = this.dirtrees.get(c);
      if (t) return t;
      if (!this.repo.hasObject(ObjectType.DIR_TREE, c)) return missing('dirtree', c, where);
      const bytes = this.verifyStoredMetadata(ObjectType.DIR_TREE, c, `dirtree of ${where}`);
      const parsed = this.checkDirTree(parseDirTree(bytes, `dirtree ${c}`), `dirtree ${c} (${where})`);
      this.dirtrees.set(c, parsed);
      this.stats.objectsFromRepo++;
      return parsed;
    };
    const checkMeta = (c: string, where: string): void => {
      if (reachMetas.has(c)) return;
      reachMetas.add(c);
      if (this.dirmetas.has(c)) return;
      if (!this.repo.hasObject(ObjectType.DIR_META, c)) missing('dirmeta', c, where);
      parseDirMeta(this.verifyStoredMetadata(ObjectType.DIR_META, c, `dirmeta of ${where}`), `dirmeta ${c}`);
      this.stats.objectsFromRepo++;
    };
    checkMeta(this.commit.rootMeta, '/');
    const stack: Array<{ tree: string; path: string; depth: number }> = [{ tree: this.commit.rootTree, path: '/', depth: 0 }];
    while (stack.length) {
      const d = stack.pop()!;
      checkLimit(this.limits, 'maxTreeDepth', d.depth, `commit ${csum}: directory ${d.path.slice(0, 200)} nesting depth`);
      if (reachTrees.has(d.tree)) continue;
      reachTrees.add(d.tree);
      const t = loadTree(d.tree, d.path);
      const base = d.path === '/' ? '' : d.path;
      for (const f of t.files) {
        if (reachContent.has(f.checksum)) continue;
        reachContent.add(f.checksum);
        if (this.content.has(f.checksum)) continue;
        const where = `${base}/${f.name}`;
        if (!this.repo.hasObject(ObjectType.FILE, f.checksum)) missing('file', f.checksum, where);
        await this.verifyStoredFile(f.checksum, where);
        this.stats.objectsFromRepo++;
      }
      for (const sub of t.dirs) {
        checkMeta(sub.meta, `${base}/${sub.name}`);
        stack.push({ tree: sub.tree, path: `${base}/${sub.name}`, depth: d.depth + 1 });
      }
    }
    this.checkTreeShape(csum, this.commit.rootTree);
    const extra = (kind: string, set: Iterable<string>, reach: Set<string>): void => {
      for (const c of set) {
        if (!reach.has(c)) {
          throw new ContainerFormatError(`${kind} object ${c} in the image is not referenced by commit ${csum}`, { objectType: kind, checksum: c });
        }
      }
    };
    extra('file', this.content, reachContent);
    extra('dirtree', [...this.dirtrees.keys()], reachTrees);
    extra('dirmeta', this.dirmetas, reachMetas);
    let merge: CommitmetaMergeSummary | undefined;
    try {
      if (this.repo.hasObject(ObjectType.COMMIT, csum)) {
        const stored = this.verifyStoredMetadata(ObjectType.COMMIT, csum, `commit ${csum}`);
        if (!stored.equals(this.commitBytes)) throw new OstreeOciError(`stored commit ${csum} differs from the image's`);
        // Every object it references was verified above: a mark left by an interrupted import
        // (Repo.markPartial) goes when this transaction commits.
        this.repo.markPartial(csum);
      } else {
        this.repo.writeMetadata(ObjectType.COMMIT, csum, this.commitBytes);
      }
      if (this.commitmetaBytes) {
        await this.repo.lockCommitmeta(); // held until the transaction ends
        merge = this.storeCommitmeta(csum, this.commitmetaBytes, this.commitmetaDict!);
      }
    } catch (e) {
      throw withContext(e, `commit ${csum}`, 'commit', csum);
    }
    return { checksum: csum, commit: this.commit, commitmeta: this.commitmetaBytes, ...(merge ? { commitmetaMerge: merge } : {}), stats: this.stats };
  }

  /**
   * Store the image's commitmeta: as it is when the repository has none for this commit, else
   * merged into the stored one so that no stored key or signature is lost.
   */
  private storeCommitmeta(csum: string, bytes: Buffer, dict: VarDict): CommitmetaMergeSummary | undefined {
    const storedBytes = this.repo.readCommitMetaBytes(csum);
    if (!storedBytes) {
      this.repo.writeCommitMeta(csum, bytes);
      return undefined;
    }
    if (storedBytes.equals(bytes)) return undefined;
    const { merged, added, kept } = mergeCommitmeta(parseMetadata(storedBytes, `stored commitmeta of ${csum}`), dict);
    if (added.length) this.repo.writeCommitMeta(csum, serializeMetadata(merged));
    return { added, kept };
  }
}
