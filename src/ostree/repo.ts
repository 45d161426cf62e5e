/**
 * Repo: the ostree repository API the rest of the project uses, over ostree-bindings.
 *
 * Reads come back parsed by our own GVariant codec (never trusted blindly); writes always pass an
 * expected checksum that is verified twice — in TypeScript before/while the bytes flow and by
 * libostree's verifying writes (never the `_trusted` variants).
 */
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, realpathSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import {
  cancelStreamedWrites,
  NativeRepo,
  ObjectType,
  OstreeError,
  REPO_MODE_NAMES,
  RepoMode,
  readXattr,
  tryLockExclusive,
  validateRev,
  type FileInfo,
  type NativeInputStream,
} from '../../ostree-bindings/index.js';
import { ObjectChecksumError, OstreeOciError, UsageError } from '../errors.js';
import { onInterrupt, removePathSync } from '../cleanup.js';
import {
  isChecksum,
  parseBareUserMeta,
  parseCommit,
  parseDirMeta,
  parseDirTree,
  parseMetadata,
  parseXattrsVariant,
  type Commit,
  type DirMeta,
  type DirTree,
  type FileHeader,
} from '../gvariant/ostree-types.js';
import type { VarDict } from '../gvariant/codec.js';
import { ContentHasher, contentPrefix, sha256Hex, SMALL_CONTENT } from './checksum.js';

export { ObjectType, RepoMode, OstreeError };

export type RepoModeName = 'bare' | 'archive' | 'bare-user' | 'bare-user-only' | 'bare-split-xattrs';

export const MODE_NAME: Record<RepoMode, RepoModeName> = {
  [RepoMode.BARE]: 'bare',
  [RepoMode.ARCHIVE]: 'archive',
  [RepoMode.BARE_USER]: 'bare-user',
  [RepoMode.BARE_USER_ONLY]: 'bare-user-only',
  [RepoMode.BARE_SPLIT_XATTRS]: 'bare-split-xattrs',
};

/**
 * What a bare-user-only repository cannot store of a content object: owners, xattrs, and mode
 * bits beyond 0775 on regular files. libostree writes such an object anyway, under a checksum it
 * can never verify again (`ostree fsck` reports it corrupt), so importers refuse it first. Empty
 * when the repository can store all of it.
 */
export function bareUserOnlyLosses(h: FileHeader): string[] {
  const lost: string[] = [];
  if (h.uid !== 0 || h.gid !== 0) lost.push(`owner ${h.uid}:${h.gid}`);
  if (h.xattrs.length) lost.push(`xattrs (${h.xattrs.map((x) => x.name.toString('utf8')).join(', ')})`);
  const extraBits = (h.mode & 0o170000) === 0o100000 ? h.mode & 0o7777 & ~0o775 : 0;
  if (extraBits) lost.push(`mode bits 0${extraBits.toString(8)}`);
  return lost;
}

/** The file header of a content object loaded by libostree (`loadFile`): info + xattrs bytes. */
export function fileHeaderOf(info: FileInfo, xattrs: Buffer, checksum: string): FileHeader {
  return {
    uid: info.uid,
    gid: info.gid,
    mode: info.mode,
    rdev: 0,
    symlinkTarget: info.symlinkTarget ?? '',
    xattrs: xattrs.length ? parseXattrsVariant(xattrs, `xattrs of file ${checksum}`) : [],
  };
}

/** Thrown when a repository path is missing or is not an ostree repository. */
export class RepoOpenError extends OstreeOciError {}

export interface LoadedCommit {
  checksum: string;
  /** The exact `.commit` bytes (what signatures cover). */
  bytes: Buffer;
  commit: Commit;
}

export interface FileObject {
  header: FileHeader;
  /** Payload size in bytes (0 for symlinks). */
  size: number;
  /** Payload stream for regular files (must be consumed or destroyed), null for symlinks. */
  stream: Readable | null;
}

/** One entry of a commit walk, in dirtree order (files first, then subdirectories). */
export type WalkEntry =
  | { kind: 'dir'; path: string; tree: string; meta: string; dirmeta: DirMeta; dirtree: DirTree }
  | { kind: 'file'; path: string; checksum: string };

export interface WriteContentOptions {
  header: FileHeader;
  /** Payload bytes, or a stream with its length. Symlinks: omit. */
  payload?: Buffer | { stream: Readable; length: number };
}

const PATH_MAX = 4096;

// A signal must not leave a libostree thread blocked on a pipe that this process, about to exit,
// would never feed nor close (the exit waits for that thread): cancel such writes (registered
// first, so it runs after every later cleanup action).
onInterrupt(cancelStreamedWrites);

/**
 * libostree builds an object's path from whatever string it is given (load_file, has_object,
 * read_commit_detached_metadata, …), so "../../x" would reach a file outside the repository:
 * every Repo method that takes an object name accepts only a checksum.
 */
function checksumArg(checksum: string): void {
  if (!isChecksum(checksum)) throw new UsageError(`"${checksum}" is not a checksum`);
}

/** Delete everything inside `dir`, keeping `dir`. */
function emptyDir(dir: string): void {
  for (const name of readdirSync(dir)) removePathSync(join(dir, name));
}

/** Up to `max` bytes from the start of a file. */
function readPrefix(path: string, max: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(max);
    let n = 0;
    for (let r; n < max && (r = readSync(fd, buf, n, max - n, null)) > 0; ) n += r;
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

const LOOSE_METADATA_EXT: Partial<Record<ObjectType, string>> = {
  [ObjectType.DIR_TREE]: 'dirtree',
  [ObjectType.DIR_META]: 'dirmeta',
  [ObjectType.COMMIT]: 'commit',
};

export class Repo {
  private inTransaction = false;
  /** Commits written in the open transaction, marked partial until it commits (see markPartial). */
  private partialMarks: Array<{ file: string; existed: boolean }> = [];
  /** The commitmeta lock's file while held until the transaction ends (lockCommitmeta). */
  private commitmetaLockFd: number | undefined;

  private constructor(
    readonly path: string,
    readonly native: NativeRepo,
  ) {}

  /** Open an existing repository; clear errors for a missing path or a non-repository. */
  static open(path: string): Repo {
    if (!existsSync(path)) throw new RepoOpenError(`repository ${path} does not exist`);
    if (!statSync(path).isDirectory()) throw new RepoOpenError(`repository ${path} is not a directory`);
    if (!existsSync(join(path, 'config')) || !existsSync(join(path, 'objects'))) {
      throw new RepoOpenError(`${path} is not an ostree repository (no config or objects/)`);
    }
    try {
      return new Repo(path, NativeRepo.open(path));
    } catch (e) {
      if (e instanceof OstreeError) throw new RepoOpenError(`cannot open repository ${path}: ${e.message}`);
      throw e;
    }
  }

  /** Create a repository (or open it if it exists already, as libostree does). */
  static create(path: string, mode: RepoModeName | RepoMode = 'bare-user'): Repo {
    const m = typeof mode === 'number' ? mode : REPO_MODE_NAMES[mode];
    if (m === undefined) throw new UsageError(`unknown repository mode "${String(mode)}"`);
    return new Repo(path, NativeRepo.create(path, m));
  }

  close(): void {
    this.native.close();
  }

  private modeName?: RepoModeName;

  /** The repository mode (fixed once the repository exists). */
  get mode(): RepoModeName {
    return (this.modeName ??= MODE_NAME[this.native.mode()]);
  }

  /**
   * In bare, bare-user and bare-user-only repositories a regular file's payload is its loose
   * object file, which plain file I/O reads far more cheaply than a libostree stream. Not in
   * archive (compressed) or bare-split-xattrs repositories.
   */
  get loosePayloads(): boolean {
    const m = this.mode;
    return m === 'bare' || m === 'bare-user' || m === 'bare-user-only';
  }

  /** `<repo>/objects/`, normalized once (a commit walk builds thousands of object paths). */
  private get objectsPrefix(): string {
    return (this.objectsPrefixCache ??= `${join(this.path, 'objects')}/`);
  }
  private objectsPrefixCache?: string;

  /** `<repo>/objects/xx/rest.<ext>`: where a loose object of that type lives. */
  private looseObjectPath(checksum: string, ext: string): string {
    return `${this.objectsPrefix}${checksum.slice(0, 2)}/${checksum.slice(2)}.${ext}`;
  }

  /** The loose file holding a regular file's payload (see `loosePayloads`), or null. */
  loosePayloadPath(checksum: string): string | null {
    checksumArg(checksum);
    return this.loosePayloads ? this.looseObjectPath(checksum, 'file') : null;
  }

  /** Resolve a ref, checksum or unique prefix to a commit checksum. */
  resolveRev(rev: string): string {
    try {
      return this.native.resolveRev(rev, false)!;
    } catch (e) {
      if (e instanceof OstreeError) throw new UsageError(`cannot resolve "${rev}" in ${this.path}: ${e.message.replace(/^resolve [^:]*: /, '')}`);
      throw e;
    }
  }

  /** Like resolveRev but returns null for a ref that does not exist. */
  resolveRevIfExists(rev: string): string | null {
    return this.native.resolveRev(rev, true);
  }

  listRefs(prefix?: string): Map<string, string> {
    return this.native.listRefs(prefix);
  }

  hasObject(type: ObjectType, checksum: string): boolean {
    checksumArg(checksum);
    return this.native.hasObject(type, checksum);
  }

  /**
   * Raw bytes of a metadata object. Loose dirtree, dirmeta and commit objects are stored as they
   * are in every repository mode and are read directly (a libostree load costs several times
   * more, and a commit walk loads thousands); a missing or unreadable file (staged, in a parent
   * repository, …) goes to libostree, so the answer is always libostree's. Neither path checks the
   * bytes: every caller parses them strictly.
   */
  loadMetadataBytes(type: ObjectType, checksum: string): Buffer {
    checksumArg(checksum);
    const ext = LOOSE_METADATA_EXT[type];
    if (ext) {
      try {
        return readFileSync(this.looseObjectPath(checksum, ext));
      } catch {
        // libostree decides below
      }
    }
    return this.native.loadVariant(type, checksum);
  }

  loadCommit(rev: string): LoadedCommit {
    const checksum = isChecksum(rev) ? rev : this.resolveRev(rev);
    const bytes = this.loadMetadataBytes(ObjectType.COMMIT, checksum);
    return { checksum, bytes, commit: parseCommit(bytes, `commit ${checksum}`) };
  }

  loadDirTree(checksum: string): DirTree {
    return parseDirTree(this.loadMetadataBytes(ObjectType.DIR_TREE, checksum), `dirtree ${checksum}`);
  }

  loadDirMeta(checksum: string): DirMeta {
    return parseDirMeta(this.loadMetadataBytes(ObjectType.DIR_META, checksum), `dirmeta ${checksum}`);
  }

  /** Open a content object: its header (uid, gid, mode, xattrs, symlink target) and payload. */
  readFile(checksum: string): FileObject {
    checksumArg(checksum);
    const { info, xattrs, stream } = this.native.loadFile(checksum);
    const header = fileHeaderOf(info, xattrs, checksum);
    const isLink = info.type === 'symlink';
    if (isLink) stream?.close();
    return { header, size: isLink ? 0 : info.size, stream: isLink || !stream ? null : stream.toReadable() };
  }

  /**
   * A content object's header and payload size (0 for symlinks) without opening its payload: what
   * `readFile` returns, at a fraction of the cost. In a bare-user repository the object's own
   * `lstat` and `user.ostreemeta` xattr are read directly (one libostree `load_file` costs several
   * times more, and a commit walk asks for thousands); anything that path does not fully
   * understand goes to libostree, so the answer is always libostree's.
   */
  readFileHeader(checksum: string): { header: FileHeader; size: number } {
    checksumArg(checksum);
    if (this.mode === 'bare-user') {
      const direct = this.bareUserHeader(checksum);
      if (direct) return direct;
    }
    const { info, xattrs } = this.native.loadFile(checksum, false);
    const isLink = info.type === 'symlink';
    return { header: fileHeaderOf(info, xattrs, checksum), size: isLink ? 0 : info.size };
  }

  /**
   * `readFileHeader` plus the loose file holding the payload, for a content object whose loose
   * file is in this repository (bare modes); null otherwise (another mode, or an object held by a
   * parent repository (core.parent) or still staged, which only libostree's streams can read).
   */
  looseFileHeader(checksum: string): { header: FileHeader; size: number; path: string } | null {
    const path = this.loosePayloadPath(checksum);
    if (!path) return null;
    if (this.mode === 'bare-user') {
      const direct = this.bareUserHeader(checksum);
      if (direct) return { ...direct, path };
    }
    if (!lstatSync(path, { throwIfNoEntry: false })) return null;
    return { ...this.readFileHeader(checksum), path };
  }

  /**
   * libostree's bare-user rules (2022.7 `_ostree_repo_load_file_bare`): the loose file is a regular
   * file, uid/gid/mode/xattrs come from `user.ostreemeta`, a symlink's target is the content up to
   * its first NUL. Null (→ libostree) for a missing object (staged, or in a parent repository), a
   * file that is not regular, or metadata our strict parser rejects (libostree reads old
   * non-normal forms leniently).
   */
  private bareUserHeader(checksum: string): { header: FileHeader; size: number } | null {
    const path = this.loosePayloadPath(checksum)!;
    let st;
    try {
      st = lstatSync(path);
    } catch {
      return null;
    }
    if (!st.isFile()) return null;
    let header: FileHeader;
    try {
      const meta = readXattr(path, 'user.ostreemeta');
      if (!meta) return null;
      header = parseBareUserMeta(meta, `user.ostreemeta of file ${checksum}`);
    } catch {
      return null;
    }
    if ((header.mode & 0o170000) !== 0o120000) return { header, size: st.size };
    const target = readPrefix(path, PATH_MAX + 1);
    const nul = target.indexOf(0);
    header.symlinkTarget = (nul < 0 ? target : target.subarray(0, nul)).toString();
    return { header, size: 0 };
  }

  /** The canonical content object stream (header + payload, uncompressed) with its length. */
  openObjectStream(type: ObjectType, checksum: string): { stream: NativeInputStream; size: number } {
    checksumArg(checksum);
    return this.native.loadObjectStream(type, checksum);
  }

  /** Re-hash one stored content object in TypeScript; returns the computed checksum. */
  async checksumStoredFile(checksum: string): Promise<string> {
    const f = this.readFile(checksum);
    const h = new ContentHasher(f.header);
    if (f.stream) for await (const chunk of f.stream) h.update(chunk as Buffer);
    return h.digest();
  }

  /** Detached metadata bytes, or null when there is none. */
  readCommitMetaBytes(checksum: string): Buffer | null {
    checksumArg(checksum);
    return this.native.readCommitDetachedMetadata(checksum);
  }

  readCommitMeta(checksum: string): VarDict | null {
    const b = this.readCommitMetaBytes(checksum);
    return b ? parseMetadata(b, `commitmeta of ${checksum}`) : null;
  }

  /** Replace a commit's detached metadata (validated as normal-form `a{sv}` first). */
  writeCommitMeta(checksum: string, bytes: Buffer): void {
    checksumArg(checksum);
    parseMetadata(bytes, `commitmeta for ${checksum}`);
    if (!this.hasObject(ObjectType.COMMIT, checksum)) {
      throw new UsageError(`cannot write commitmeta: commit ${checksum} is not in ${this.path}`);
    }
    this.native.writeCommitDetachedMetadata(checksum, bytes);
  }

  /**
   * Run `fn` inside a libostree transaction: committed when it resolves, aborted (staged objects
   * and ref changes discarded) when it throws.
   */
  async transaction<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    if (this.inTransaction) throw new OstreeOciError(`a transaction is already open on ${this.path}`);
    const resumed = this.native.prepareTransaction();
    this.inTransaction = true;
    // libostree stages objects in tmp/staging-*, and an aborted transaction leaves that directory
    // for the next one to "resume": whatever it holds is moved into objects/ by the next commit of
    // any transaction, unchecked. So a transaction of ours starts with nothing staged and, when it
    // fails, deletes what it staged (while it still holds the directory's lock).
    const staging = this.stagingDir();
    if (resumed && staging) emptyDir(staging);
    // Interrupted (SIGINT… in the CLI, src/cleanup.ts): what a failure would remove goes too.
    const unregister = onInterrupt(() => {
      if (staging) removePathSync(staging);
      this.clearPartialMarks(false);
    });
    try {
      const result = await fn(this);
      this.native.commitTransaction();
      this.clearPartialMarks(true);
      return result;
    } catch (e) {
      if (staging) removePathSync(staging);
      try {
        this.native.abortTransaction();
      } catch {
        /* report the original error */
      }
      this.clearPartialMarks(false);
      throw e;
    } finally {
      unregister();
      this.inTransaction = false;
      this.partialMarks = [];
      if (this.commitmetaLockFd !== undefined) {
        closeSync(this.commitmetaLockFd);
        this.commitmetaLockFd = undefined;
      }
    }
  }

  /**
   * Take the repository's commitmeta lock, waiting while another ostree-oci process holds it.
   * libostree reads and writes a commit's detached metadata as a whole, so two processes that
   * each read it, add their signatures and write it back would lose the signatures of the one
   * that wrote first. Importers and signers therefore hold this lock (an flock on
   * `.ostree-oci-commitmeta.lock` in the repository) from their read until their write is
   * visible: in a transaction until it commits or aborts (the write is staged until then), else
   * until the returned function is called. Waits by polling, so signals are still handled.
   */
  async lockCommitmeta(): Promise<() => void> {
    if (this.commitmetaLockFd !== undefined) return () => {};
    const fd = openSync(join(this.path, '.ostree-oci-commitmeta.lock'), 'a', 0o644);
    try {
      while (!tryLockExclusive(fd)) await new Promise((r) => setTimeout(r, 20));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    if (this.inTransaction) {
      this.commitmetaLockFd = fd;
      return () => {};
    }
    let open = true;
    return () => {
      if (open) closeSync(fd);
      open = false;
    };
  }

  /**
   * The staging directory of this process's open transaction: libostree keeps it open, so it is
   * the `tmp/staging-*` directory among this process's file descriptors (another process's
   * staging directory is never one of them).
   */
  private stagingDir(): string | undefined {
    const prefix = `${realpathSync(join(this.path, 'tmp'))}/staging-`;
    for (const fd of readdirSync('/proc/self/fd')) {
      let target: string;
      try {
        target = readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        continue; // closed meanwhile (readdir's own descriptor)
      }
      if (target.startsWith(prefix) && !target.endsWith('-lock') && !target.includes('/', prefix.length)) return target;
    }
    return undefined;
  }

  /**
   * libostree commits a transaction by renaming the staged objects into objects/ one by one, in
   * directory order, so a process killed in the middle can leave a commit object whose dirtrees or
   * files are not there yet (`ostree fsck` then fails). A commit written in a transaction is
   * therefore marked partial (`state/<checksum>.commitpartial`, as libostree's pull does) until the
   * transaction has committed: a partial commit is one fsck and pulls know to be incomplete, and
   * the next import of it completes it and removes the mark. An importer that finds the commit
   * already stored and has verified everything it references calls this too, so the mark of an
   * earlier, interrupted import goes away when this transaction commits.
   */
  markPartial(checksum: string): void {
    checksumArg(checksum);
    if (!this.inTransaction) throw new OstreeOciError(`markPartial(${checksum}) outside a transaction on ${this.path}`);
    const dir = join(this.path, 'state');
    const file = join(dir, `${checksum}.commitpartial`);
    if (this.partialMarks.some((m) => m.file === file)) return;
    const existed = existsSync(file);
    if (!existed) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(file, '');
    }
    this.partialMarks.push({ file, existed });
  }

  /** After commit: every commit written is whole, remove its mark. After abort: only the new marks. */
  private clearPartialMarks(committed: boolean): void {
    for (const m of this.partialMarks) {
      if (!committed && m.existed) continue;
      try {
        unlinkSync(m.file);
      } catch {
        /* already gone */
      }
    }
  }

  /**
   * Throw a UsageError unless `ref` is a local branch name libostree accepts and can create here:
   * a valid name (`ostree_validate_rev`), and no existing ref in the way (`a` when `a/b` exists,
   * `a/b/c` when `a/b` does). libostree checks these only while committing a transaction, after
   * the staged objects have been moved into objects/, so importers call this before starting.
   */
  checkNewRef(ref: string): void {
    try {
      validateRev(ref);
    } catch (e) {
      if (e instanceof OstreeError) throw new UsageError(`invalid ref name ${JSON.stringify(ref)}: refs are names of letters, digits, ".", "_" and "-" (not starting with "." or "-") joined by single slashes`, { ref });
      throw e;
    }
    const heads = join(this.path, 'refs', 'heads');
    const parts = ref.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      let st;
      try {
        st = lstatSync(join(heads, prefix));
      } catch {
        return; // nothing at this level: nothing deeper either
      }
      if (i < parts.length && !st.isDirectory()) {
        throw new UsageError(`cannot create ref ${ref} in ${this.path}: ref ${prefix} exists`, { ref, conflict: prefix });
      }
      if (i === parts.length && st.isDirectory()) {
        throw new UsageError(`cannot create ref ${ref} in ${this.path}: refs exist below it (${ref}/…)`, { ref });
      }
    }
  }

  /** Stage a ref change (inside a transaction) or set it at once (outside one). */
  setRef(ref: string, checksum: string | null): void {
    if (this.inTransaction) this.native.transactionSetRef(ref, checksum);
    else this.native.setRefImmediate(ref, checksum);
  }

  /**
   * Write a metadata object under `expected`. The SHA-256 is checked here first (error names both
   * checksums, nothing is written); libostree then re-hashes and validates structure.
   */
  writeMetadata(type: ObjectType, expected: string, bytes: Buffer): string {
    const actual = sha256Hex(bytes);
    const typeName = ObjectType[type]?.toLowerCase().replace('_', '') ?? String(type);
    if (actual !== expected) throw new ObjectChecksumError(typeName, expected, actual);
    if (type === ObjectType.COMMIT && this.inTransaction) this.markPartial(expected);
    const stored = this.native.writeMetadata(type, expected, bytes);
    if (stored !== expected) throw new ObjectChecksumError(typeName, expected, stored);
    return stored;
  }

  /**
   * Write a content object under `expected`, hashing it in TypeScript as it streams; libostree
   * verifies it again. A mismatch throws naming both checksums and stores nothing.
   */
  async writeContent(expected: string, opts: WriteContentOptions): Promise<string> {
    const prefix = contentPrefix(opts.header);
    const hasher = new ContentHasher(opts.header);
    const payload = opts.payload;
    let stored: string;
    if (!payload || Buffer.isBuffer(payload) || payload.length <= SMALL_CONTENT) {
      let body: Buffer;
      if (!payload) body = Buffer.alloc(0);
      else if (Buffer.isBuffer(payload)) body = payload;
      else body = await readExactly(payload.stream, payload.length, expected);
      hasher.update(body);
      const actual = hasher.digest();
      if (actual !== expected) throw new ObjectChecksumError('file', expected, actual);
      stored = await this.native.writeContent(expected, Buffer.concat([prefix, body]));
    } else {
      const { stream, length } = payload;
      // The object stream is prefix + payload; the payload is hashed on its way through.
      const hashing = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hasher.update(chunk);
          cb(null, chunk);
        },
      });
      hashing.push(prefix);
      stream.on('error', (e) => hashing.destroy(e));
      stream.pipe(hashing);
      const check = (): void => {
        if (hasher.bytes !== length) {
          throw new OstreeOciError(`file ${expected}: payload has ${hasher.bytes} bytes, expected ${length}`);
        }
        const actual = hasher.digest();
        if (actual !== expected) throw new ObjectChecksumError('file', expected, actual);
      };
      try {
        stored = await this.native.writeContent(expected, { stream: hashing, length: prefix.length + length });
      } catch (e) {
        // When all bytes went through, our own diagnosis names both checksums clearly.
        if (hasher.bytes === length) check();
        throw e;
      }
      check();
    }
    if (stored !== expected) throw new ObjectChecksumError('file', expected, stored);
    return stored;
  }

  /** Every object reachable from a commit, as libostree's traversal finds it. */
  reachableObjects(commit: string, maxDepth = 0): Array<{ checksum: string; type: ObjectType }> {
    checksumArg(commit);
    return this.native.traverseCommit(commit, maxDepth);
  }

  /** Walk a commit's tree in TypeScript: directories pre-order, files first within each. */
  *walk(commit: string | LoadedCommit): Generator<WalkEntry> {
    const c = typeof commit === 'string' ? this.loadCommit(commit) : commit;
    const stack: Array<{ path: string; tree: string; meta: string }> = [
      { path: '/', tree: c.commit.rootTree, meta: c.commit.rootMeta },
    ];
    // Few distinct dirmetas serve every directory: each is loaded once (entries share the object).
    const metas = new Map<string, DirMeta>();
    while (stack.length) {
      const d = stack.pop()!;
      const dirtree = this.loadDirTree(d.tree);
      let dirmeta = metas.get(d.meta);
      if (!dirmeta) metas.set(d.meta, (dirmeta = this.loadDirMeta(d.meta)));
      yield { kind: 'dir', path: d.path, tree: d.tree, meta: d.meta, dirmeta, dirtree };
      const base = d.path === '/' ? '' : d.path;
      for (const f of dirtree.files) yield { kind: 'file', path: `${base}/${f.name}`, checksum: f.checksum };
      for (let i = dirtree.dirs.length - 1; i >= 0; i--) {
        const sub = dirtree.dirs[i]!;
        stack.push({ path: `${base}/${sub.name}`, tree: sub.tree, meta: sub.meta });
      }
    }
  }

  /** Re-hash and structure-check a stored object with libostree (throws on corruption). */
  fsckObject(type: ObjectType, checksum: string): void {
    checksumArg(checksum);
    this.native.fsckObject(type, checksum);
  }
}

async function readExactly(stream: Readable, length: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream) {
    parts.push(chunk as Buffer);
    n += (chunk as Buffer).length;
    if (n > length) throw new OstreeOciError(`file ${what}: payload longer than ${length} bytes`);
  }
  if (n !== length) throw new OstreeOciError(`file ${what}: payload has ${n} bytes, expected ${length}`);
  return Buffer.concat(parts, n);
}
