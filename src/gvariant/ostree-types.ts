/**
 * Typed ostree objects over the GVariant codec (shared/specs/ostree-objects.md §2):
 * commit, dirtree, dirmeta, file header, xattrs and `a{sv}` metadata.
 *
 * uid/gid/mode and the commit timestamp are stored big-endian inside the variant (§2.9); the
 * types here hold the real values and do the swapping. Parsers validate what libostree's
 * validators check (normal form, 32-byte checksums, file names, modes, sorted entries) and name
 * the object and field in every error.
 */
import { GVariantError } from '../errors.js';
import { decode, encode, type GValue, type VarDict, type Variant } from './codec.js';
import { readDirTreeCanonical } from './dirtree-fast.js';

export const COMMIT_TYPE = '(a{sv}aya(say)sstayay)';
export const DIRTREE_TYPE = '(a(say)a(sayay))';
export const DIRMETA_TYPE = '(uuua(ayay))';
export const FILE_HEADER_TYPE = '(uuuusa(ayay))';
export const XATTRS_TYPE = 'a(ayay)';
export const METADATA_TYPE = 'a{sv}';

/** An xattr as ostree stores it: the name WITHOUT its trailing NUL here; value raw. */
export interface OstreeXattr {
  name: Buffer;
  value: Buffer;
}

export interface Commit {
  metadata: VarDict;
  /** Parent commit checksum (hex) or null for a root commit. */
  parent: string | null;
  related: Array<[string, Buffer]>;
  subject: string;
  body: string;
  /** Seconds since the epoch, UTC. */
  timestamp: bigint;
  rootTree: string;
  rootMeta: string;
}

export interface DirTree {
  files: Array<{ name: string; checksum: string }>;
  dirs: Array<{ name: string; tree: string; meta: string }>;
}

export interface DirMeta {
  uid: number;
  gid: number;
  mode: number;
  xattrs: OstreeXattr[];
}

export interface FileHeader {
  uid: number;
  gid: number;
  mode: number;
  rdev: number;
  symlinkTarget: string;
  xattrs: OstreeXattr[];
}

const bswap32 = (x: number): number =>
  (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;

const bswap64 = (x: bigint): bigint => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(x);
  return b.readBigUInt64BE();
};

function csumHex(b: GValue, where: string): string {
  const buf = b as Buffer;
  if (!Buffer.isBuffer(buf) || buf.length !== 32) {
    throw new GVariantError(`${where}: checksum must be 32 bytes, found ${Buffer.isBuffer(buf) ? buf.length : typeof b}`);
  }
  return buf.toString('hex');
}

const HEX64 = /^[0-9a-f]{64}$/;
export const isChecksum = (s: string): boolean => HEX64.test(s);

function csumBytes(hex: string, where: string): Buffer {
  if (!isChecksum(hex)) throw new GVariantError(`${where}: "${hex}" is not a 64-character lowercase hex checksum`);
  return Buffer.from(hex, 'hex');
}

/** ot_util_filename_validate: not empty, not `.`/`..`, no `/`. (UTF-8 is checked by the codec.) */
export function validateFilename(name: string, where: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/')) {
    throw new GVariantError(`${where}: invalid file name "${name}"`);
  }
}

const MODE_ALLOWED = 0o170000 | 0o7777;

function validateXattrs(xs: OstreeXattr[], where: string): void {
  for (const x of xs) {
    if (x.name.length === 0) throw new GVariantError(`${where}: empty xattr name`);
    if (x.name.includes(0)) throw new GVariantError(`${where}: xattr name contains NUL`);
  }
}

function parseXattrs(v: GValue, where: string): OstreeXattr[] {
  return (v as GValue[]).map((e, i) => {
    const [name, value] = e as [Buffer, Buffer];
    if (name.length === 0 || name[name.length - 1] !== 0) {
      throw new GVariantError(`${where}: xattr ${i} name is not NUL-terminated`);
    }
    return { name: name.subarray(0, name.length - 1), value };
  });
}

/** Sort by name (strcmp) as libostree ≥ 2024.10 does; duplicates are an error. */
export function sortXattrs(xs: OstreeXattr[], where = 'xattrs'): OstreeXattr[] {
  const sorted = [...xs].sort((a, b) => Buffer.compare(a.name, b.name));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1]!.name.equals(sorted[i]!.name)) {
      throw new GVariantError(`${where}: duplicate xattr ${sorted[i]!.name.toString()}`);
    }
  }
  return sorted;
}

const xattrsValue = (xs: OstreeXattr[]): GValue =>
  xs.map((x) => [Buffer.concat([x.name, Buffer.from([0])]), x.value]);

export function parseXattrsVariant(data: Buffer, what = 'xattrs'): OstreeXattr[] {
  return parseXattrs(decode(XATTRS_TYPE, data, what), what);
}

export function serializeXattrs(xs: OstreeXattr[]): Buffer {
  return encode(XATTRS_TYPE, xattrsValue(xs));
}

// --- commit ---------------------------------------------------------------------------------

export function parseCommit(data: Buffer, what = 'commit'): Commit {
  const [meta, parent, related, subject, body, ts, tree, dmeta] = decode(COMMIT_TYPE, data, what) as GValue[];
  const p = parent as Buffer;
  if (p.length !== 0 && p.length !== 32) throw new GVariantError(`${what}: parent checksum must be 0 or 32 bytes, found ${p.length}`);
  const metadata = (meta as GValue[]).map((e) => e as unknown as [string, Variant]);
  for (const [k] of metadata) if (k === '') throw new GVariantError(`${what}: empty metadata key`);
  return {
    metadata,
    parent: p.length ? p.toString('hex') : null,
    related: (related as GValue[]).map((r) => {
      const [n, c] = r as [string, Buffer];
      return [n, c];
    }),
    subject: subject as string,
    body: body as string,
    timestamp: bswap64(ts as bigint),
    rootTree: csumHex(tree!, `${what}: root dirtree`),
    rootMeta: csumHex(dmeta!, `${what}: root dirmeta`),
  };
}

export function serializeCommit(c: Commit): Buffer {
  return encode(COMMIT_TYPE, [
    c.metadata as unknown as GValue,
    c.parent ? csumBytes(c.parent, 'commit parent') : Buffer.alloc(0),
    c.related.map(([n, b]) => [n, b]),
    c.subject,
    c.body,
    bswap64(c.timestamp),
    csumBytes(c.rootTree, 'commit root dirtree'),
    csumBytes(c.rootMeta, 'commit root dirmeta'),
  ]);
}

// --- dirtree --------------------------------------------------------------------------------

export function parseDirTree(data: Buffer, what = 'dirtree'): DirTree {
  // Data in normal form (all that libostree writes) is read directly; anything else goes through
  // the codec, which gives the same value or the precise error.
  const raw = readDirTreeCanonical(data);
  if (raw) {
    const t: DirTree = {
      files: raw.files.map((f) => ({ name: f.name.toString(), checksum: f.checksum.toString('hex') })),
      dirs: raw.dirs.map((d) => ({ name: d.name.toString(), tree: d.tree.toString('hex'), meta: d.meta.toString('hex') })),
    };
    checkDirTree(t, raw.files.map((f) => f.name), raw.dirs.map((d) => d.name), what);
    return t;
  }
  const [files, dirs] = decode(DIRTREE_TYPE, data, what) as GValue[][];
  const t: DirTree = {
    files: files!.map((f) => {
      const [name, c] = f as [string, Buffer];
      return { name, checksum: csumHex(c, `${what}: file "${name}"`) };
    }),
    dirs: dirs!.map((d) => {
      const [name, tree, meta] = d as [string, Buffer, Buffer];
      return { name, tree: csumHex(tree, `${what}: dir "${name}" dirtree`), meta: csumHex(meta, `${what}: dir "${name}" dirmeta`) };
    }),
  };
  checkDirTree(t, t.files.map((f) => Buffer.from(f.name)), t.dirs.map((d) => Buffer.from(d.name)), what);
  return t;
}

/** libostree's dirtree rules: valid names, each list sorted (strcmp), no name in both. */
function checkDirTree(t: DirTree, fileNames: Buffer[], dirNames: Buffer[], what: string): void {
  t.files.forEach((f, i) => validateFilename(f.name, `${what}: file ${i}`));
  t.dirs.forEach((d, i) => validateFilename(d.name, `${what}: dir ${i}`));
  checkSorted(fileNames, `${what}: files`);
  checkSorted(dirNames, `${what}: dirs`);
  if (t.dirs.length > 0 && t.files.length > 0) {
    const names = new Set(t.files.map((f) => f.name));
    for (const d of t.dirs) if (names.has(d.name)) throw new GVariantError(`${what}: "${d.name}" is both a file and a directory`);
  }
}

function checkSorted(names: Buffer[], where: string): void {
  for (let i = 1; i < names.length; i++) {
    if (Buffer.compare(names[i - 1]!, names[i]!) >= 0) {
      throw new GVariantError(`${where}: "${names[i]}" is not sorted after "${names[i - 1]}" (or duplicate)`);
    }
  }
}

/** Serialize a dirtree; entries are sorted by name (strcmp) as libostree writes them. */
export function serializeDirTree(t: DirTree): Buffer {
  const byName = <T extends { name: string }>(a: T, b: T) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name));
  const files = [...t.files].sort(byName);
  const dirs = [...t.dirs].sort(byName);
  for (const f of files) validateFilename(f.name, 'dirtree file');
  for (const d of dirs) validateFilename(d.name, 'dirtree dir');
  return encode(DIRTREE_TYPE, [
    files.map((f) => [f.name, csumBytes(f.checksum, `dirtree file "${f.name}"`)]),
    dirs.map((d) => [d.name, csumBytes(d.tree, `dirtree dir "${d.name}"`), csumBytes(d.meta, `dirtree dir "${d.name}"`)]),
  ]);
}

// --- dirmeta --------------------------------------------------------------------------------

/** `(uuua(ayay))` with big-endian uid/gid/mode: a dirmeta, or a bare-user `user.ostreemeta`. */
function decodeOwnerModeXattrs(data: Buffer, what: string): DirMeta {
  const [uid, gid, mode, xattrs] = decode(DIRMETA_TYPE, data, what) as GValue[];
  return {
    uid: bswap32(uid as number),
    gid: bswap32(gid as number),
    mode: bswap32(mode as number),
    xattrs: parseXattrs(xattrs!, what),
  };
}

export function parseDirMeta(data: Buffer, what = 'dirmeta'): DirMeta {
  const m = decodeOwnerModeXattrs(data, what);
  if ((m.mode & 0o170000) !== 0o040000) throw new GVariantError(`${what}: mode 0${m.mode.toString(8)} is not a directory`);
  if (m.mode & ~MODE_ALLOWED) throw new GVariantError(`${what}: invalid mode bits 0${m.mode.toString(8)}`);
  return m;
}

export function serializeDirMeta(m: DirMeta): Buffer {
  validateXattrs(m.xattrs, 'dirmeta');
  return encode(DIRMETA_TYPE, [bswap32(m.uid), bswap32(m.gid), bswap32(m.mode), xattrsValue(m.xattrs)]);
}

// --- file header ----------------------------------------------------------------------------

export function parseFileHeader(data: Buffer, what = 'file header'): FileHeader {
  const [uid, gid, mode, rdev, target, xattrs] = decode(FILE_HEADER_TYPE, data, what) as GValue[];
  const h: FileHeader = {
    uid: bswap32(uid as number),
    gid: bswap32(gid as number),
    mode: bswap32(mode as number),
    rdev: bswap32(rdev as number),
    symlinkTarget: target as string,
    xattrs: parseXattrs(xattrs!, what),
  };
  const type = checkContentMode(h.mode, what);
  if (h.rdev !== 0) throw new GVariantError(`${what}: invalid rdev ${h.rdev}`);
  if (type === 0o120000 && h.symlinkTarget === '') throw new GVariantError(`${what}: symlink with an empty target`);
  if (type === 0o100000 && h.symlinkTarget !== '') throw new GVariantError(`${what}: regular file with a symlink target`);
  return h;
}

/**
 * The `user.ostreemeta` xattr of a bare-user content object, `(uuua(ayay))` with big-endian
 * uid/gid/mode (shared/specs/ostree-objects.md §3.3), as the header of a regular file or symlink
 * whose target is still to be read from the object's content.
 */
export function parseBareUserMeta(data: Buffer, what = 'user.ostreemeta'): FileHeader {
  // Three fixed u32 and an empty array (zero bytes) is the common case, read without the codec.
  const m =
    data.length === 12
      ? { uid: data.readUInt32BE(0), gid: data.readUInt32BE(4), mode: data.readUInt32BE(8), xattrs: [] }
      : decodeOwnerModeXattrs(data, what);
  const h: FileHeader = { uid: m.uid, gid: m.gid, mode: m.mode, rdev: 0, symlinkTarget: '', xattrs: m.xattrs };
  checkContentMode(h.mode, what);
  return h;
}

/** A content object's mode: a regular file or symlink with only allowed bits; returns its type. */
function checkContentMode(mode: number, what: string): number {
  const type = mode & 0o170000;
  if (type !== 0o100000 && type !== 0o120000) throw new GVariantError(`${what}: mode 0${mode.toString(8)} is neither a regular file nor a symlink`);
  if (mode & ~MODE_ALLOWED) throw new GVariantError(`${what}: invalid mode bits 0${mode.toString(8)}`);
  return type;
}

export function serializeFileHeader(h: FileHeader): Buffer {
  validateXattrs(h.xattrs, 'file header');
  return encode(FILE_HEADER_TYPE, [bswap32(h.uid), bswap32(h.gid), bswap32(h.mode), bswap32(h.rdev), h.symlinkTarget, xattrsValue(h.xattrs)]);
}

/** The content object stream prefix: BE32 header length, 4 zero bytes, header. */
export function fileObjectPrefix(headerBytes: Buffer): Buffer {
  const pre = Buffer.alloc(8);
  pre.writeUInt32BE(headerBytes.length, 0);
  return Buffer.concat([pre, headerBytes]);
}

// --- a{sv} metadata -------------------------------------------------------------------------

export function parseMetadata(data: Buffer, what = 'metadata'): VarDict {
  const dict = decode(METADATA_TYPE, data, what) as unknown as VarDict;
  return dict;
}

export function serializeMetadata(dict: VarDict): Buffer {
  return encode(METADATA_TYPE, dict as unknown as GValue);
}

/** Set (replace the first, else append) a key in an `a{sv}`. */
export function setMetadata(dict: VarDict, key: string, value: Variant): VarDict {
  const out = dict.filter(([k]) => k !== key);
  const i = dict.findIndex(([k]) => k === key);
  if (i >= 0) out.splice(i, 0, [key, value]);
  else out.push([key, value]);
  return out;
}
