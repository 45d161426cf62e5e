/**
 * Typed, lifetime-safe bindings to libostree 2022.7 (and the GLib/GIO bits it needs).
 *
 * Rules kept here so nothing above has to think about them:
 *  - every GError becomes a thrown OstreeError(domain, code, message) and is freed;
 *  - every GObject/GVariant/GBytes/GHashTable we receive is released before the call returns
 *    (variant bytes are copied into a Buffer first), except handles wrapped in a class with close();
 *  - byte buffers passed in are copied by GLib (g_bytes_new), so JS may reuse them at once.
 */
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import * as F from './ffi.js';

const { koffi } = F;
type Ptr = bigint;
type Out<T> = [T | null];
const O_CLOEXEC = 0o2000000; // Linux value; Node does not export it

export enum ObjectType {
  FILE = 1,
  DIR_TREE = 2,
  DIR_META = 3,
  COMMIT = 4,
  TOMBSTONE_COMMIT = 5,
  COMMIT_META = 6,
}

export const OBJECT_TYPE_NAMES: Record<number, string> = {
  1: 'file',
  2: 'dirtree',
  3: 'dirmeta',
  4: 'commit',
  5: 'tombstone-commit',
  6: 'commitmeta',
};

export const GVARIANT_TYPE_OF: Partial<Record<ObjectType, string>> = {
  [ObjectType.DIR_TREE]: '(a(say)a(sayay))',
  [ObjectType.DIR_META]: '(uuua(ayay))',
  [ObjectType.COMMIT]: '(a{sv}aya(say)sstayay)',
  [ObjectType.COMMIT_META]: 'a{sv}',
};

export enum RepoMode {
  BARE = 0,
  ARCHIVE = 1,
  BARE_USER = 2,
  BARE_USER_ONLY = 3,
  BARE_SPLIT_XATTRS = 4,
}

export const REPO_MODE_NAMES: Record<string, RepoMode> = {
  bare: RepoMode.BARE,
  archive: RepoMode.ARCHIVE,
  'archive-z2': RepoMode.ARCHIVE,
  'bare-user': RepoMode.BARE_USER,
  'bare-user-only': RepoMode.BARE_USER_ONLY,
  'bare-split-xattrs': RepoMode.BARE_SPLIT_XATTRS,
};

/** A GError from GLib/libostree, with its domain (as text), code and message. */
export class OstreeError extends Error {
  readonly exitCode = 1;
  constructor(
    readonly domain: string,
    readonly code: number,
    message: string,
    readonly operation: string,
  ) {
    super(`${operation}: ${message}`);
    this.name = 'OstreeError';
  }
  /** G_IO_ERROR_NOT_FOUND */
  get isNotFound(): boolean {
    return this.domain === 'g-io-error-quark' && this.code === 1;
  }
}

/** Cancellables of the streamed content writes in flight (NativeRepo.writeContent). */
const streamedWrites = new Set<Ptr>();

/**
 * Stop every streamed content write in flight. Such a write runs on a libuv thread that blocks
 * reading a pipe this process feeds; when a signal ends the process, Node joins those threads at
 * exit, and the pipe would never see more data nor EOF: the process hung after "interrupted".
 * Cancelling wakes the read (GLib polls the cancellable with the pipe), the write fails and its
 * thread ends. Safe from any point of the main thread; the writes' own promises then reject.
 */
export function cancelStreamedWrites(): void {
  for (const c of streamedWrites) F.g_cancellable_cancel(c);
}

function takeError(errOut: Out<Ptr>, operation: string): OstreeError {
  const p = errOut[0];
  if (!p) return new OstreeError('unknown', 0, 'failed without an error message', operation);
  const e = koffi.decode(p, F.GErrorStruct) as { domain: number; code: number; message: string | null };
  const domain = (F.g_quark_to_string(e.domain) as string | null) ?? String(e.domain);
  const err = new OstreeError(domain, e.code, e.message ?? '', operation);
  F.g_error_free(p);
  return err;
}

function check(ok: number, err: Out<Ptr>, operation: string): void {
  if (!ok) throw takeError(err, operation);
}

/**
 * Copy len bytes at ptr into a fresh Buffer. memcpy into the Buffer rather than koffi.view():
 * views create external ArrayBuffers that measurably grow RSS over 100k calls.
 */
function copyOut(ptr: Ptr | null, len: number): Buffer {
  if (!ptr || len === 0) return Buffer.alloc(0);
  const out = Buffer.allocUnsafe(len);
  F.memcpy(out, ptr, len);
  return out;
}

function cString(ptr: Ptr | null): string | null {
  if (!ptr) return null;
  return koffi.decode(ptr, 'char', -1) as string;
}

/** Copy a GVariant's serialized bytes and drop our reference. */
function takeVariantBytes(v: Ptr): Buffer {
  try {
    return copyOut(F.g_variant_get_data(v) as Ptr | null, Number(F.g_variant_get_size(v)));
  } finally {
    F.g_variant_unref(v);
  }
}

/** Build a sunk (non-floating) GVariant of `type` from bytes; caller must g_variant_unref. */
function newVariant(type: string, data: Buffer): Ptr {
  const bytes = F.g_bytes_new(data.length ? data : null, data.length) as Ptr;
  try {
    return F.g_variant_ref_sink(F.g_variant_new_from_bytes(type, bytes, 0)) as Ptr;
  } finally {
    F.g_bytes_unref(bytes);
  }
}

function takeHexChecksum(csum: Ptr): string {
  try {
    const hex = F.ostree_checksum_from_bytes(csum) as Ptr;
    try {
      return cString(hex)!;
    } finally {
      F.g_free(hex);
    }
  } finally {
    F.g_free(csum);
  }
}

/** A GInputStream over a copy of `data` (unref it when done; `data` may be reused at once). */
function memoryInputStream(data: Buffer): Ptr {
  const bytes = F.g_bytes_new(data.length ? data : null, data.length) as Ptr;
  try {
    return F.g_memory_input_stream_new_from_bytes(bytes) as Ptr;
  } finally {
    F.g_bytes_unref(bytes);
  }
}

/** The GVariant of a metadata object's bytes (unref it when done) and the write's description. */
function metadataVariant(type: ObjectType, expected: string | null, data: Buffer): { v: Ptr; what: string } {
  const gtype = GVARIANT_TYPE_OF[type];
  if (!gtype) throw new Error(`not a metadata object type: ${type}`);
  return { v: newVariant(gtype, data), what: `write ${OBJECT_TYPE_NAMES[type]} ${expected ?? ''}`.trimEnd() };
}

/**
 * The koffi callback of a background libostree write: releases what the write read from, then
 * settles with the checksum libostree computed, or its GError.
 */
function settleWrite(
  what: string,
  out: Out<Ptr>,
  err: Out<Ptr>,
  release: () => void,
  resolve: (checksum: string) => void,
  reject: (e: unknown) => void,
): (e: unknown, ok: number) => void {
  return (e, ok) => {
    release();
    try {
      if (e) throw e;
      check(ok, err, what);
      resolve(takeHexChecksum(out[0]!));
    } catch (x) {
      reject(x);
    }
  };
}

/**
 * libostree's own check of a ref name (`ostree_validate_rev`: fragments of `[-._\w\d]` joined by
 * single slashes); throws its OstreeError ("Invalid ref name …") when libostree would refuse it.
 */
export function validateRev(rev: string): void {
  const err: Out<Ptr> = [null];
  check(F.ostree_validate_rev(rev, err), err, 'ref');
}

const ENODATA = koffi.os.errno.ENODATA;
/** XATTR_SIZE_MAX: no value can be longer, so one buffer serves every call. */
const xattrBuffer = Buffer.allocUnsafe(65536);

/**
 * One extended attribute of a path, not following symlinks (Node has no xattr API): its value, or
 * null when the path has no such attribute (ENODATA). Other failures throw an Error carrying the
 * errno `code` (e.g. ENOENT, ENOTSUP) and naming path and attribute.
 */
export function readXattr(path: string, name: string): Buffer | null {
  const n = Number(F.lgetxattr(path, name, xattrBuffer, xattrBuffer.length));
  if (n >= 0) return Buffer.from(xattrBuffer.subarray(0, n));
  const errno = koffi.errno(); // saved by koffi right after the call
  if (errno === ENODATA) return null;
  const code = Object.entries(koffi.os.errno).find(([, v]) => v === errno)?.[0] ?? `errno ${errno}`;
  throw Object.assign(new Error(`lgetxattr ${path} ${name}: ${code}`), { code, errno });
}

const LOCK_EX = 2;
const LOCK_NB = 4;

/**
 * Try to take an exclusive flock(2) on an open file (Node has no flock API): true when taken,
 * false when another open file description holds it. Closing the file releases it, and so does
 * the death of the process.
 */
export function tryLockExclusive(fd: number): boolean {
  for (;;) {
    if (F.flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
    const errno = koffi.errno();
    if (errno === koffi.os.errno.EWOULDBLOCK) return false;
    if (errno === koffi.os.errno.EINTR) continue;
    const code = Object.entries(koffi.os.errno).find(([, v]) => v === errno)?.[0] ?? `errno ${errno}`;
    throw Object.assign(new Error(`flock: ${code}`), { code, errno });
  }
}

/** File information from ostree_repo_load_file. */
export interface FileInfo {
  type: 'regular' | 'symlink';
  uid: number;
  gid: number;
  mode: number;
  size: number;
  symlinkTarget: string | null;
}

/** A GInputStream we own: read with read(), release with close(). */
export class NativeInputStream {
  private ptr: Ptr | null;
  constructor(ptr: Ptr) {
    this.ptr = ptr;
  }
  /** Read up to buf.length bytes; returns the count (0 at end of stream). */
  read(buf: Buffer): number {
    if (!this.ptr) throw new Error('stream closed');
    const n: Out<number | bigint> = [null];
    const err: Out<Ptr> = [null];
    check(F.g_input_stream_read_all(this.ptr, buf, buf.length, n, null, err), err, 'read');
    return Number(n[0] ?? 0);
  }
  close(): void {
    if (!this.ptr) return;
    const p = this.ptr;
    this.ptr = null;
    const err: Out<Ptr> = [null];
    const ok = F.g_input_stream_close(p, null, err);
    F.g_object_unref(p);
    check(ok, err, 'close stream');
  }
  /** A Node Readable over this stream; closes it at the end or on destroy. */
  toReadable(chunkSize = 1 << 20): Readable {
    const self = this;
    return new Readable({
      highWaterMark: chunkSize,
      read() {
        try {
          const buf = Buffer.allocUnsafe(chunkSize);
          const n = self.read(buf);
          if (n === 0) {
            self.close();
            this.push(null);
          } else this.push(n === buf.length ? buf : buf.subarray(0, n));
        } catch (e) {
          this.destroy(e as Error);
        }
      },
      destroy(err, cb) {
        try {
          self.close();
        } catch {
          /* already failing */
        }
        cb(err);
      },
    });
  }
}

/** Data source for a content write: bytes in memory, or a stream of known length. */
export type ContentSource = Buffer | { stream: Readable; length: number };

/**
 * An open OstreeRepo. One instance is used from the JS thread only (libostree repos are not
 * MT-safe); content writes of large objects run on a koffi worker thread, which libostree allows
 * for object writes inside a transaction.
 */
export class NativeRepo {
  private ptr: Ptr | null;

  private constructor(ptr: Ptr) {
    this.ptr = ptr;
  }

  private get self(): Ptr {
    if (!this.ptr) throw new Error('repository handle is closed');
    return this.ptr;
  }

  static open(path: string): NativeRepo {
    const file = F.g_file_new_for_path(path) as Ptr;
    const repo = F.ostree_repo_new(file) as Ptr;
    F.g_object_unref(file);
    const err: Out<Ptr> = [null];
    if (!F.ostree_repo_open(repo, null, err)) {
      F.g_object_unref(repo);
      throw takeError(err, `open repository ${path}`);
    }
    return new NativeRepo(repo);
  }

  static create(path: string, mode: RepoMode): NativeRepo {
    const file = F.g_file_new_for_path(path) as Ptr;
    const repo = F.ostree_repo_new(file) as Ptr;
    F.g_object_unref(file);
    const err: Out<Ptr> = [null];
    if (!F.ostree_repo_create(repo, mode, null, err)) {
      F.g_object_unref(repo);
      throw takeError(err, `create repository ${path}`);
    }
    return new NativeRepo(repo);
  }

  close(): void {
    if (this.ptr) F.g_object_unref(this.ptr);
    this.ptr = null;
  }

  mode(): RepoMode {
    return F.ostree_repo_get_mode(this.self) as RepoMode;
  }

  /** Resolve a refspec/checksum/prefix; null when allowNoent and it does not exist. */
  resolveRev(refspec: string, allowNoent = false): string | null {
    const out: Out<Ptr> = [null];
    const err: Out<Ptr> = [null];
    check(F.ostree_repo_resolve_rev(this.self, refspec, allowNoent ? 1 : 0, out, err), err, `resolve ${refspec}`);
    const p = out[0];
    if (!p) return null;
    try {
      return cString(p);
    } finally {
      F.g_free(p);
    }
  }

  /** All refs (ref name → checksum), optionally below a prefix. */
  listRefs(prefix?: string): Map<string, string> {
    const out: Out<Ptr> = [null];
    const err: Out<Ptr> = [null];
    check(F.ostree_repo_list_refs(this.self, prefix ?? null, out, null, err), err, 'list refs');
    const ht = out[0]!;
    const result = new Map<string, string>();
    try {
      const len: Out<number> = [null];
      const keys = F.g_hash_table_get_keys_as_array(ht, len) as Ptr;
      try {
        const n = Number(len[0] ?? 0);
        const ptrs = n ? (koffi.decode(keys, 'void *', n) as Ptr[]) : [];
        for (const k of ptrs) {
          const v = F.g_hash_table_lookup(ht, k) as Ptr;
          const name = cString(k)!;
          result.set(prefix ? `${prefix}${prefix.endsWith('/') ? '' : '/'}${name}` : name, cString(v)!);
        }
      } finally {
        F.g_free(keys);
      }
    } finally {
      F.g_hash_table_unref(ht);
    }
    return result;
  }

  /** Serialized bytes of a metadata object (throws OstreeError NOT_FOUND if missing). */
  loadVariant(type: ObjectType, checksum: string): Buffer {
    const out: Out<Ptr> = [null];
    const err: Out<Ptr> = [null];
    check(
      F.ostree_repo_load_variant(this.self, type, checksum, out, err),
      err,
      `load ${OBJECT_TYPE_NAMES[type]} ${checksum}`,
    );
    return takeVariantBytes(out[0]!);
  }

  loadVariantIfExists(type: ObjectType, checksum: string): Buffer | null {
    const out: Out<Ptr> = [null];
    const err: Out<Ptr> = [null];
    check(
      F.ostree_repo_load_variant_if_exists(this.self, type, checksum, out, err),
      err,
      `load ${OBJECT_TYPE_NAMES[type]} ${checksum}`,
    );
    return out[0] ? takeVariantBytes(out[0]) : null;
  }

  hasObject(type: ObjectType, checksum: string): boolean {
    const have: Out<number> = [null];
    const err: Out<Ptr> = [null];
    check(F.ostree_repo_has_object(this.self, type, checksum, have, null, err), err, `has ${checksum}`);
    return Boolean(have[0]);
  }

  /** Detached metadata bytes (`a{sv}`), or null when the commit has none. */
  readCommitDetachedMetadata(checksum: string): Buffer | null {
    const out: Out<Ptr> = [null];
    const err: Out<Ptr> = [null];
    check(
      F.ostree_repo_read_commit_detached_metadata(this.self, checksum, out, null, err),
      err,
      `read commitmeta of ${checksum}`,
    );
    return out[0] ? takeVariantBytes(out[0]) : null;
  }

  /** Replace the detached metadata; null writes libostree's empty file. */
  writeCommitDetachedMetadata(checksum: string, data: Buffer | null): void {
    const v = data ? newVariant('a{sv}', data) : null;
    const err: Out<Ptr> = [null];
    try {
      check(
        F.ostree_repo_write_commit_detached_metadata(this.self, checksum, v, null, err),
        err,
        `write commitmeta of ${checksum}`,
      );
    } finally {
      if (v) F.g_variant_unref(v);
    }
  }

  /**
   * Open a content object: metadata, xattrs (`a(ayay)` bytes) and, for regular files, a stream
   * (unless `withStream` is false).
   */
  loadFile(checksum: string, withStream = true): { info: FileInfo; xattrs: Buffer; stream: NativeInputStream | null } {
    // Without a stream libostree does not keep (or, outside bare-user, even open) the file.
    const input: Out<Ptr> | null = withStream ? [null] : null;
    const info: Out<Ptr> = [null];
    const xattrs: Out<Ptr> = [null];
    const err: Out<Ptr> = [null];
    check(F.ostree_repo_load_file(this.self, checksum, input, info, xattrs, null, err), err, `load file ${checksum}`);
    const fi = info[0]!;
    let fileInfo: FileInfo;
    try {
      const t = F.g_file_info_get_file_type(fi) as number;
      fileInfo = {
        type: t === 3 ? 'symlink' : 'regular',
        uid: F.g_file_info_get_attribute_uint32(fi, 'unix::uid') as number,
        gid: F.g_file_info_get_attribute_uint32(fi, 'unix::gid') as number,
        mode: F.g_file_info_get_attribute_uint32(fi, 'unix::mode') as number,
        size: Number(F.g_file_info_get_size(fi)),
        symlinkTarget: t === 3 ? (F.g_file_info_get_symlink_target(fi) as string | null) : null,
      };
    } finally {
      F.g_object_unref(fi);
    }
    const x = xattrs[0] ? takeVariantBytes(xattrs[0]) : Buffer.alloc(0);
    return { info: fileInfo, xattrs: x, stream: input?.[0] ? new NativeInputStream(input[0]) : null };
  }

  /** The canonical object stream (for content: header + payload, uncompressed) and its size. */
  loadObjectStream(type: ObjectType, checksum: string): { stream: NativeInputStream; size: number } {
    const input: Out<Ptr> = [null];
    const size: Out<number | bigint> = [null];
    const err: Out<Ptr> = [null];
    check(
      F.ostree_repo_load_object_stream(this.self, type, checksum, input, size, null, err),
      err,
      `load ${OBJECT_TYPE_NAMES[type]} stream ${checksum}`,
    );
    return { stream: new NativeInputStream(input[0]!), size: Number(size[0] ?? 0) };
  }

  prepareTransaction(): boolean {
    const resume: Out<number> = [null];
    const err: Out<Ptr> = [null];
    check(F.ostree_repo_prepare_transaction(this.self, resume, null, err), err, 'prepare transaction');
    return Boolean(resume[0]);
  }

  commitTransaction(): void {
    const err: Out<Ptr> = [null];
    check(F.ostree_repo_commit_transaction(this.self, null, null, err), err, 'commit transaction');
  }

  abortTransaction(): void {
    const err: Out<Ptr> = [null];
    check(F.ostree_repo_abort_transaction(this.self, null, err), err, 'abort transaction');
  }

  /** Stage a ref change for the current transaction (checksum null deletes). */
  transactionSetRef(ref: string, checksum: string | null, remote: string | null = null): void {
    F.ostree_repo_transaction_set_ref(this.self, remote, ref, checksum);
  }

  setRefImmediate(ref: string, checksum: string | null, remote: string | null = null): void {
    const err: Out<Ptr> = [null];
    check(F.ostree_repo_set_ref_immediate(this.self, remote, ref, checksum, null, err), err, `set ref ${ref}`);
  }

  /**
   * Write a metadata object. libostree hashes and validates it (normal form, schema) and
   * fails when the hash is not `expected`. Returns the checksum libostree computed.
   */
  writeMetadata(type: ObjectType, expected: string | null, data: Buffer): string {
    const { v, what } = metadataVariant(type, expected, data);
    const out: Out<Ptr> = [null];
    const err: Out<Ptr> = [null];
    try {
      check(F.ostree_repo_write_metadata(this.self, type, expected, v, out, null, err), err, what);
    } finally {
      F.g_variant_unref(v);
    }
    return takeHexChecksum(out[0]!);
  }

  /**
   * writeMetadata on a libuv worker thread (libostree hashes, validates and verifies it there), so
   * the calling thread goes on meanwhile. The bytes are copied first: `data` may be reused as soon
   * as this returns.
   */
  writeMetadataInBackground(type: ObjectType, expected: string | null, data: Buffer): Promise<string> {
    const { v, what } = metadataVariant(type, expected, data);
    const out: Out<Ptr> = [null];
    const err: Out<Ptr> = [null];
    return new Promise<string>((resolve, reject) => {
      F.ostree_repo_write_metadata.async(
        this.self, type, expected, v, out, null, err,
        settleWrite(what, out, err, () => F.g_variant_unref(v), resolve, reject),
      );
    });
  }

  /**
   * Write a content object stream held in memory on a libuv worker thread (libostree hashes and
   * verifies it there), so the calling thread goes on meanwhile. The bytes are copied into a
   * GBytes first: `data` may be reused as soon as this returns.
   */
  writeContentInBackground(expected: string | null, data: Buffer): Promise<string> {
    const what = `write file ${expected ?? ''}`.trimEnd();
    const stream = memoryInputStream(data);
    const out: Out<Ptr> = [null];
    const err: Out<Ptr> = [null];
    return new Promise<string>((resolve, reject) => {
      F.ostree_repo_write_content.async(
        this.self, expected, stream, data.length, out, null, err,
        settleWrite(what, out, err, () => F.g_object_unref(stream), resolve, reject),
      );
    });
  }

  /**
   * Write a content object from its object stream (BE32 header length, padding, header, payload).
   * Always passes out_csum so libostree re-hashes and rejects a mismatch with `expected`.
   * Small objects go through a memory stream; large ones stream through a pipe while the write
   * runs on a worker thread, so memory stays flat.
   */
  async writeContent(expected: string | null, source: ContentSource): Promise<string> {
    const what = `write file ${expected ?? ''}`.trimEnd();
    if (Buffer.isBuffer(source)) {
      const stream = memoryInputStream(source);
      const out: Out<Ptr> = [null];
      const err: Out<Ptr> = [null];
      try {
        check(F.ostree_repo_write_content(this.self, expected, stream, source.length, out, null, err), err, what);
      } finally {
        F.g_object_unref(stream);
      }
      return takeHexChecksum(out[0]!);
    }
    const fdArr = [0, 0];
    if (F.pipe2(fdArr, O_CLOEXEC) !== 0) throw new Error(`${what}: pipe2 failed`);
    const [rfd, wfd] = fdArr as [number, number];
    const gstream = F.g_unix_input_stream_new(rfd, 1) as Ptr;
    const out: Out<Ptr> = [null];
    const err: Out<Ptr> = [null];
    // The libuv thread blocks reading the pipe; cancelStreamedWrites() wakes it (see there).
    const cancellable = F.g_cancellable_new() as Ptr;
    streamedWrites.add(cancellable);
    const writing = new Promise<number>((resolve, reject) => {
      F.ostree_repo_write_content.async(this.self, expected, gstream, source.length, out, cancellable, err, (e: unknown, r: number) =>
        e ? reject(e) : resolve(r),
      );
    });
    const sink = createWriteStream('', { fd: wfd, autoClose: true, highWaterMark: 1 << 20 });
    const pumping = new Promise<void>((resolve) => {
      // A failed write (e.g. libostree closed the pipe after a bad header) shows up as EPIPE here;
      // the libostree error is the one worth reporting, so pumping never rejects.
      source.stream.on('error', () => sink.destroy());
      sink.on('error', () => resolve());
      sink.on('close', () => resolve());
      source.stream.pipe(sink);
    });
    let ok: number;
    try {
      ok = await writing;
    } finally {
      streamedWrites.delete(cancellable);
      if (!sink.closed) sink.destroy();
      await pumping;
      F.g_object_unref(gstream);
      F.g_object_unref(cancellable);
    }
    check(ok, err, what);
    return takeHexChecksum(out[0]!);
  }

  /** Every object reachable from a commit (maxDepth -1 = all parents; 0 = this commit only). */
  traverseCommit(checksum: string, maxDepth = 0): Array<{ checksum: string; type: ObjectType }> {
    const out: Out<Ptr> = [null];
    const err: Out<Ptr> = [null];
    check(F.ostree_repo_traverse_commit(this.self, checksum, maxDepth, out, null, err), err, `traverse ${checksum}`);
    const ht = out[0]!;
    const result: Array<{ checksum: string; type: ObjectType }> = [];
    try {
      const len: Out<number> = [null];
      const keys = F.g_hash_table_get_keys_as_array(ht, len) as Ptr;
      try {
        const n = Number(len[0] ?? 0);
        const ptrs = n ? (koffi.decode(keys, 'void *', n) as Ptr[]) : [];
        for (const k of ptrs) {
          const cs: Out<string> = [null];
          const t: Out<number> = [null];
          F.ostree_object_name_deserialize(k, cs, t);
          result.push({ checksum: cs[0]!, type: t[0] as ObjectType });
        }
      } finally {
        F.g_free(keys);
      }
    } finally {
      F.g_hash_table_unref(ht);
    }
    return result;
  }

  /** Re-hash and validate one stored object (throws on corruption). */
  fsckObject(type: ObjectType, checksum: string): void {
    const err: Out<Ptr> = [null];
    check(F.ostree_repo_fsck_object(this.self, type, checksum, null, err), err, `fsck ${OBJECT_TYPE_NAMES[type]} ${checksum}`);
  }

  /** GPG-sign a commit through libostree (appends to ostree.gpgsigs). */
  gpgSignCommit(checksum: string, keyId: string, homedir: string | null): void {
    const err: Out<Ptr> = [null];
    check(F.ostree_repo_sign_commit(this.self, checksum, keyId, homedir, null, err), err, `gpg-sign ${checksum}`);
  }

  /**
   * Verify a commit's GPG signatures against the keyrings in `keyringDir` (and libostree's
   * defaults). Returns counts and a human description; never throws for "no valid signature".
   */
  gpgVerifyCommit(checksum: string, keyringDir: string | null): { valid: number; all: number; description: string } {
    const dir = keyringDir ? (F.g_file_new_for_path(keyringDir) as Ptr) : null;
    const err: Out<Ptr> = [null];
    try {
      const r = F.ostree_repo_verify_commit_ext(this.self, checksum, dir, null, null, err) as Ptr | null;
      if (!r) throw takeError(err, `gpg-verify ${checksum}`);
      try {
        const all = F.ostree_gpg_verify_result_count_all(r) as number;
        const valid = F.ostree_gpg_verify_result_count_valid(r) as number;
        const lines: string[] = [];
        for (let i = 0; i < all; i++) {
          const gs = F.g_string_new('') as Ptr;
          F.ostree_gpg_verify_result_describe(r, i, gs, '', 0);
          const str = koffi.decode(gs, 'char *') as string;
          lines.push(str);
          F.g_string_free(gs, 1);
        }
        return { valid, all, description: lines.join('') };
      } finally {
        F.g_object_unref(r);
      }
    } finally {
      if (dir) F.g_object_unref(dir);
    }
  }
}
