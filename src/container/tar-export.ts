/**
 * ostree-ext tar format v1 writer (shared/specs/ostree-container-format.md §1.2–§1.5).
 *
 * `OstreeTarWriter` follows ostree-ext's writer operation by operation (same entries, same order,
 * same tar-rs header mutations), so a layer is a pure function of the repository content:
 *
 *  - full export (`exportCommitTar`, like `ostree-ext-cli tar export`): `./`, the repository
 *    skeleton and `config`, `.commit` then `.commitmeta`, the root `.dirmeta`, then a pre-order
 *    walk writing `.dirtree`/`.dirmeta` objects, each content object once (`.file-xattrs-link`
 *    regular file, PAX `SCHILY.xattr.*` records except `security.selinux`, `.file`) followed by
 *    its checkout path as a hardlink (zero-length regular files as plain files), directories from
 *    their dirmeta, `/usr/etc` written as `etc`, and `var/tmp` (01777) when the commit has none;
 *  - commit layer (`exportFinalChunk`): the same walk without file entries, then `var/tmp`,
 *    then the remainder objects in checksum order with their checkout paths;
 *  - content chunk layers (`exportChunk`): the skeleton, then the chunk's objects in checksum
 *    order with their checkout paths.
 *
 * One deliberate difference: ostree-ext skips the commit's `/sysroot` subtree entirely, which
 * loses its dirtree objects when no other directory shares them (§1.4, "edge-case bug"). Here
 * the subtree's metadata objects are still written (no directory entries), so the import is
 * always complete. For ordinary commits (empty `/sysroot`) the bytes are the same.
 *
 * Layers still get the checkout entries of files below `/sysroot` (as ostree-ext's `write_chunk`
 * writes them), so a commit with a file whose entry would fall on the repository skeleton
 * (`collidesWithRepoSkeleton`, e.g. an embedded repository at `/sysroot/ostree/repo`) is refused:
 * importers would read that entry as part of the image's repository.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { ObjectType } from '../../ostree-bindings/index.js';
import { ObjectChecksumError, OstreeOciError } from '../errors.js';
import { ContentBatch, ContentHasher, contentPrefix, SMALL_CONTENT } from '../ostree/checksum.js';
import { loadVerifiedMetadata } from '../ostree/verify-objects.js';
import { UnrepresentableCommitError } from './errors.js';
import {
  parseDirMeta,
  parseDirTree,
  serializeXattrs,
  type DirMeta,
  type FileHeader,
} from '../gvariant/ostree-types.js';
import { fileHeaderOf, type LoadedCommit, type Repo } from '../ostree/repo.js';
import { collidesWithRepoSkeleton, mapPathV0, objectPath, OSTREEDIR, pathEquivalentForTar, pathForTarV1, REPO_CONFIG, xattrsLinkPath } from './paths.js';
import { EntryType, Header, rustComponents } from './tar-header.js';
import { TarBuilder, TarOutput } from './tar-writer.js';

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const SELINUX_XATTR = 'security.selinux';

/** Objects of one layer: checksum → size and checkout paths (absolute, `/usr/bin/bash`). */
export type ChunkMapping = Map<string, { size: number; paths: string[] }>;

/** Refuse a checkout entry that would fall on the repository skeleton (see module doc). */
export function checkCheckoutPath(commit: string, tarPath: string, checksum: string): void {
  const p = tarPath.startsWith('./') ? tarPath.slice(2) : tarPath;
  if (!collidesWithRepoSkeleton(p)) return;
  throw new UnrepresentableCommitError(
    `commit ${commit}: cannot encapsulate ${p} (file object ${checksum}): its layer entry would collide with the ` +
      'sysroot/ostree/repo skeleton the format writes for the image\'s own repository (importers would read it as part of that repository)',
    { commit, path: p, checksum },
  );
}

/** Every checkout path of a mapping (the whole commit's, before any layer is written). */
export function checkCheckoutPaths(commit: string, mapping: ChunkMapping): void {
  for (const [checksum, e] of mapping) for (const p of e.paths) checkCheckoutPath(commit, pathForTarV1(p), checksum);
}

/** A loaded content object, ready to be written. */
interface ContentObject {
  header: FileHeader;
  /** Serialized `a(ayay)` xattrs as stored (empty buffer when none). */
  xattrsBytes: Buffer;
  size: number;
  /** Payload: in memory (small files), chunks read on demand (large files), or null (symlinks). */
  data: Buffer | AsyncIterable<Buffer> | null;
}

/**
 * Open a content object (header, xattrs bytes, payload). Loose payloads (bare modes) are read with
 * plain file I/O after a header-only read; other modes go through libostree's stream.
 */
export function loadContentObject(repo: Repo, checksum: string): ContentObject {
  const loose = repo.looseFileHeader(checksum);
  if (loose) {
    const { header, size, path } = loose;
    // readFileHeader's parse is strict (normal form), so this re-serialization is byte-identical
    // to the stored `a(ayay)` that libostree hands out.
    const xattrsBytes = serializeXattrs(header.xattrs);
    if ((header.mode & S_IFMT) !== S_IFREG) return { header, xattrsBytes, size: 0, data: null };
    // Plain file I/O rather than a GInputStream read 64 KiB per FFI call.
    if (size > SMALL_CONTENT) return { header, xattrsBytes, size, data: readChunks(path) };
    const buf = size ? readFileSync(path) : Buffer.alloc(0);
    if (buf.length !== size) throw new OstreeOciError(`file object ${checksum}: read ${buf.length} bytes, expected ${size}`);
    return { header, xattrsBytes, size, data: buf };
  }
  const { info, xattrs, stream } = repo.native.loadFile(checksum);
  const header = fileHeaderOf(info, xattrs, checksum);
  if (info.type === 'symlink') {
    stream?.close();
    return { header, xattrsBytes: xattrs, size: 0, data: null };
  }
  if (!stream) throw new OstreeOciError(`file object ${checksum}: regular file without content stream`);
  if (info.size > SMALL_CONTENT) return { header, xattrsBytes: xattrs, size: info.size, data: stream.toReadable() };
  try {
    const buf = Buffer.allocUnsafe(info.size);
    const n = info.size ? stream.read(buf) : 0;
    if (n !== info.size) throw new OstreeOciError(`file object ${checksum}: read ${n} bytes, expected ${info.size}`);
    if (stream.read(Buffer.allocUnsafe(1)) !== 0) throw new OstreeOciError(`file object ${checksum}: longer than ${info.size} bytes`);
    return { header, xattrsBytes: xattrs, size: info.size, data: buf };
  } finally {
    stream.close();
  }
}

/** Bytes read per chunk of a large payload. */
const READ_CHUNK = 1 << 20;

/**
 * A large loose payload, read synchronously chunk by chunk as the tar writer asks for it. The
 * writer awaits the consumer between chunks anyway; a ReadStream added a thread-pool round trip
 * (and an idle main thread) for every 64 KiB. The descriptor is closed however the loop ends.
 */
async function* readChunks(path: string): AsyncGenerator<Buffer> {
  const fd = openSync(path, 'r');
  try {
    for (;;) {
      const buf = Buffer.allocUnsafe(READ_CHUNK);
      const n = readSync(fd, buf, 0, READ_CHUNK, null);
      if (n === 0) return;
      yield n === READ_CHUNK ? buf : buf.subarray(0, n);
    }
  } finally {
    closeSync(fd);
  }
}

/** `src`, feeding `hasher` on the way (destroyed with the consumer's loop, by for-await). */
async function* hashed(src: AsyncIterable<Buffer>, hasher: ContentHasher): AsyncGenerator<Buffer> {
  for await (const chunk of src) {
    hasher.update(chunk as Buffer);
    yield chunk as Buffer;
  }
}

/** A dirtree walk path (`./`, `./usr/bin`) as a commit path (`/`, `/usr/bin`). */
const commitPath = (p: string): string => (p.startsWith('./') ? `/${p.slice(2)}` : p);

/** What tar-rs `set_link_name` would store for a symlink target. */
function normalizedLinkName(target: string): string {
  let s = '';
  let needsSlash = false;
  for (const c of rustComponents(target)) {
    if (needsSlash) s += '/';
    s += c.text;
    if (c.text !== '/') needsSlash = true;
  }
  if (target.endsWith('/')) s += '/';
  return s;
}

export class OstreeTarWriter {
  private wroteInitDirs = false;
  private wroteVarTmp = false;
  private readonly wroteDirtree = new Set<string>();
  private readonly wroteDirmeta = new Set<string>();
  private readonly wroteContent = new Set<string>();
  /** True while writing the commit layer's structure (directories and metadata only). */
  structureOnly = false;
  /** Objects written so far, for callers that report counts. */
  readonly counts = { dirtree: 0, dirmeta: 0, file: 0, bytes: 0 };
  /** dirmeta bytes by checksum (a commit has few distinct ones, referenced by every directory). */
  private readonly dirmetaCache = new Map<string, Buffer>();

  constructor(
    private readonly repo: Repo,
    private readonly commit: LoadedCommit,
    private readonly b: TarBuilder,
  ) {}

  private loadDirMetaBytes(checksum: string, where: string): Buffer {
    let b = this.dirmetaCache.get(checksum);
    if (!b) {
      b = loadVerifiedMetadata(this.repo, ObjectType.DIR_META, checksum, where);
      this.dirmetaCache.set(checksum, b);
    }
    return b;
  }

  private async appendDefaultDir(path: string): Promise<void> {
    const h = Header.gnu();
    h.setEntryType(EntryType.Directory);
    h.setUid(0);
    h.setGid(0);
    h.setMode(0o755);
    h.setSize(0);
    await this.b.appendData(h, path);
  }

  private async appendDefaultData(path: string, buf: Buffer): Promise<void> {
    const h = Header.gnu();
    h.setEntryType(EntryType.Regular);
    h.setUid(0);
    h.setGid(0);
    h.setMode(0o644);
    h.setSize(buf.length);
    await this.b.appendData(h, path, buf);
  }

  /** `sysroot`, `sysroot/ostree`, `…/repo`, `…/objects`, `objects/00..ff`, the repo dirs, `config`. */
  async writeRepoStructure(): Promise<void> {
    if (this.wroteInitDirs) return;
    const objdir = `${OSTREEDIR}/repo/objects`;
    for (const p of ['sysroot', OSTREEDIR, `${OSTREEDIR}/repo`, objdir]) await this.appendDefaultDir(p);
    for (let d = 0; d <= 0xff; d++) await this.appendDefaultDir(`${objdir}/${d.toString(16).padStart(2, '0')}`);
    for (const d of ['extensions', 'refs', 'refs/heads', 'refs/mirrors', 'refs/remotes', 'state', 'tmp', 'tmp/cache']) {
      await this.appendDefaultDir(`${OSTREEDIR}/repo/${d}`);
    }
    await this.appendDefaultData(`${OSTREEDIR}/repo/config`, Buffer.from(REPO_CONFIG));
    this.wroteInitDirs = true;
  }

  /** `./`, skeleton, commit (+ commitmeta), root dirmeta, the tree, `var/tmp`. */
  async writeCommit(): Promise<void> {
    const c = this.commit.commit;
    const rootMetaBytes = this.loadDirMetaBytes(c.rootMeta, '/');
    await this.appendDir('./', parseDirMeta(rootMetaBytes, `dirmeta ${c.rootMeta}`));
    await this.writeRepoStructure();
    await this.appendCommitObject();
    await this.appendMeta(ObjectType.DIR_META, c.rootMeta, rootMetaBytes);
    await this.appendDirtree('./', c.rootTree, true);
    await this.appendStandardVar();
    this.verifyPending();
  }

  private async appendCommitObject(): Promise<void> {
    const csum = this.commit.checksum;
    await this.appendDefaultData(objectPath('commit', csum), this.commit.bytes);
    const meta = this.repo.readCommitMetaBytes(csum);
    if (meta) await this.appendDefaultData(objectPath('commitmeta', csum), meta);
  }

  private async appendMeta(type: ObjectType.DIR_TREE | ObjectType.DIR_META, checksum: string, bytes: Buffer): Promise<void> {
    const set = type === ObjectType.DIR_TREE ? this.wroteDirtree : this.wroteDirmeta;
    if (set.has(checksum)) return;
    set.add(checksum);
    if (type === ObjectType.DIR_TREE) this.counts.dirtree++;
    else this.counts.dirmeta++;
    await this.appendDefaultData(objectPath(type === ObjectType.DIR_TREE ? 'dirtree' : 'dirmeta', checksum), bytes);
  }

  /**
   * Write a content object (first time only): `.file-xattrs-link`, PAX xattrs, `.file`. Returns
   * the object path and the header to clone for its checkout hardlinks. The object is re-hashed
   * as it is written (`path`, one of its paths in the commit, names it if it is corrupt): the
   * layer fails rather than carry content the commit does not reference.
   */
  private async appendContent(checksum: string, path: string): Promise<{ objPath: string; h: Header }> {
    const objPath = objectPath('file', checksum);
    // A hardlink to an object already in the stream needs only its header, not its payload.
    const written = this.wroteContent.has(checksum);
    const obj: ContentObject = written ? { ...this.repo.readFileHeader(checksum), xattrsBytes: Buffer.alloc(0), data: null } : loadContentObject(this.repo, checksum);
    const h = Header.gnu();
    h.setUid(obj.header.uid);
    h.setGid(obj.header.gid);
    h.setMode(obj.header.mode & ~S_IFMT);
    const isReg = (obj.header.mode & S_IFMT) === S_IFREG;
    if (isReg) {
      h.setEntryType(EntryType.Regular);
      h.setSize(obj.size);
    } else {
      h.setEntryType(EntryType.Symlink);
      h.setSize(0);
    }
    if (written) return { objPath, h };
    this.wroteContent.add(checksum);
    this.counts.file++;
    this.counts.bytes += obj.size;
    await this.appendDefaultData(xattrsLinkPath(checksum), obj.xattrsBytes);
    const pax: Array<[string, Buffer]> = [];
    for (const x of obj.header.xattrs) {
      const name = x.name.toString('utf8');
      if (!Buffer.from(name, 'utf8').equals(x.name)) {
        throw new OstreeOciError(`file object ${checksum}: xattr name ${JSON.stringify(name)} is not valid UTF-8`);
      }
      if (name === SELINUX_XATTR) continue;
      pax.push([`SCHILY.xattr.${name}`, x.value]);
    }
    await this.b.appendPax(pax);
    const corrupt = (actual: string): Error =>
      new ObjectChecksumError('file', checksum, actual, `${path} in repository ${this.repo.path} (ostree-oci fsck lists every corrupt object)`);
    const hasher = new ContentHasher(obj.header);
    const verify = (): void => {
      const actual = hasher.digest();
      if (actual !== checksum) throw corrupt(actual);
    };
    if (isReg) {
      const data = obj.data!;
      if (Buffer.isBuffer(data)) {
        this.stageForVerify(checksum, path, contentPrefix(obj.header), data);
        await this.b.appendData(h, objPath, data);
      } else {
        await this.b.appendData(h, objPath, { stream: hashed(data, hasher), length: obj.size, what: `file object ${checksum}` });
        verify();
      }
    } else {
      verify();
      const target = obj.header.symlinkTarget;
      if (normalizedLinkName(target) !== target) {
        // Targets tar-rs would rewrite ("denormal" `//`, interior `.`) are stored literally, so
        // the object keeps its checksum; past 100 bytes in a long-link entry (ostree-ext fails).
        await this.b.appendLink(h, objPath, target, { literal: true });
      } else {
        await this.b.appendLink(h, objPath, target);
      }
    }
    return { objPath, h };
  }

  private async appendDir(path: string, meta: DirMeta): Promise<void> {
    const h = Header.gnu();
    h.setEntryType(EntryType.Directory);
    h.setSize(0);
    h.setUid(meta.uid);
    h.setGid(meta.gid);
    h.setMode(meta.mode & ~S_IFMT);
    await this.b.appendData(h, path);
  }

  /** The checkout entry of an object: a hardlink, or an empty regular file for empty files. */
  private async appendContentHardlink(srcPath: string, h: Header, dest: string, checksum: string): Promise<void> {
    checkCheckoutPath(this.commit.checksum, dest, checksum);
    const isRegularZeroSized = h.entryType() === EntryType.Regular && h.size() === 0;
    h.setSize(0);
    if (!isRegularZeroSized) {
      h.setEntryType(EntryType.Link);
      h.setLinkName(srcPath);
    }
    await this.b.appendData(h, dest);
  }

  private async appendDirtree(dirpath: string, checksum: string, isRoot: boolean): Promise<void> {
    const bytes = loadVerifiedMetadata(this.repo, ObjectType.DIR_TREE, checksum, commitPath(dirpath));
    await this.appendMeta(ObjectType.DIR_TREE, checksum, bytes);
    const tree = parseDirTree(bytes, `dirtree ${checksum}`);
    const join = (name: string): string => (dirpath.endsWith('/') ? `${dirpath}${name}` : `${dirpath}/${name}`);
    if (!this.structureOnly) {
      for (const f of tree.files) {
        const { objPath, h } = await this.appendContent(f.checksum, commitPath(join(f.name)));
        await this.appendContentHardlink(objPath, h, mapPathV0(join(f.name)), f.checksum);
      }
    }
    if (pathEquivalentForTar(dirpath, 'var/tmp')) this.wroteVarTmp = true;
    for (const d of tree.dirs) {
      const metaBytes = this.loadDirMetaBytes(d.meta, commitPath(join(d.name)));
      await this.appendMeta(ObjectType.DIR_META, d.meta, metaBytes);
      const meta = parseDirMeta(metaBytes, `dirmeta ${d.meta}`);
      if (isRoot && d.name === 'sysroot') {
        // The skeleton already wrote `sysroot`; keep its objects but no entries (see module doc).
        await this.appendObjectsOnly(d.tree, '/sysroot');
        continue;
      }
      const sub = mapPathV0(join(d.name));
      await this.appendDir(sub, meta);
      await this.appendDirtree(sub, d.tree, false);
    }
  }

  /** Metadata (and, outside structure-only mode, content) objects of a subtree, no entries. */
  private async appendObjectsOnly(checksum: string, path: string): Promise<void> {
    const bytes = loadVerifiedMetadata(this.repo, ObjectType.DIR_TREE, checksum, path);
    await this.appendMeta(ObjectType.DIR_TREE, checksum, bytes);
    const tree = parseDirTree(bytes, `dirtree ${checksum}`);
    if (!this.structureOnly) for (const f of tree.files) await this.appendContent(f.checksum, `${path}/${f.name}`);
    for (const d of tree.dirs) {
      await this.appendMeta(ObjectType.DIR_META, d.meta, this.loadDirMetaBytes(d.meta, `${path}/${d.name}`));
      await this.appendObjectsOnly(d.tree, `${path}/${d.name}`);
    }
  }

  /** `var/tmp` (01777 root) unless the commit has it. */
  private async appendStandardVar(): Promise<void> {
    if (this.wroteVarTmp) return;
    const h = Header.gnu();
    h.setEntryType(EntryType.Directory);
    h.setSize(0);
    h.setUid(0);
    h.setGid(0);
    h.setMode(0o1777);
    await this.b.appendData(h, 'var/tmp');
  }

  /**
   * Small content objects (payload in memory) are re-hashed in batches (ContentBatch). A corrupt
   * object therefore fails the layer a few objects after its entry was written, and at the latest
   * when `writeCommit` or `writeChunk` returns (both end with `verifyPending`).
   */
  private readonly staged = new ContentBatch<string>();

  private stageForVerify(checksum: string, path: string, prefix: Buffer, data: Buffer): void {
    if (!this.staged.fits(prefix.length + data.length)) this.verifyPending();
    this.staged.add(checksum, prefix, data, path);
  }

  /** Re-hash every staged object; the first whose bytes do not match its checksum is an error. */
  verifyPending(): void {
    for (const x of this.staged.take()) {
      if (x.actual !== x.expected) {
        throw new ObjectChecksumError('file', x.expected, x.actual, `${x.tag} in repository ${this.repo.path} (ostree-oci fsck lists every corrupt object)`);
      }
    }
  }

  /** Objects in checksum order, each followed by its checkout paths. */
  async writeChunk(mapping: ChunkMapping): Promise<void> {
    const sorted = [...mapping.keys()].sort();
    for (const checksum of sorted) {
      const paths = mapping.get(checksum)!.paths;
      const { objPath, h } = await this.appendContent(checksum, paths[0] ?? checksum);
      for (const p of paths) {
        await this.appendContentHardlink(objPath, h.clone(), pathForTarV1(p), checksum);
      }
    }
    this.verifyPending();
  }
}

function run(repo: Repo, commit: LoadedCommit, fn: (w: OstreeTarWriter, b: TarBuilder) => Promise<void>): TarOutput {
  return TarOutput.run(async (out) => {
    const b = new TarBuilder(out);
    await fn(new OstreeTarWriter(repo, commit, b), b);
    await b.finish();
  });
}

/** The whole commit as one tar stream (`ostree-ext-cli tar export`). */
export function exportCommitTar(repo: Repo, commit: LoadedCommit): TarOutput {
  return run(repo, commit, (w) => w.writeCommit());
}

/** The ostree commit layer of an image: structure, commit, metadata, then `remainder`. */
export function exportFinalChunk(repo: Repo, commit: LoadedCommit, remainder: ChunkMapping): TarOutput {
  return run(repo, commit, async (w) => {
    w.structureOnly = true;
    await w.writeCommit();
    w.structureOnly = false;
    await w.writeChunk(remainder);
  });
}

/** A content chunk layer: the repository skeleton, then the chunk's objects. */
export function exportChunk(repo: Repo, commit: LoadedCommit, chunk: ChunkMapping): TarOutput {
  return run(repo, commit, async (w) => {
    await w.writeRepoStructure();
    await w.writeChunk(chunk);
  });
}
