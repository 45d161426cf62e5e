/**
 * Tar headers byte-compatible with tar-rs 0.4.x, which ostree-ext uses to write its layers
 * (shared/specs/ostree-container-format.md §1.2). The class mirrors tar-rs's `Header` so that the
 * export code can perform the same operations in the same order and get the same bytes:
 *
 *  - `Header.gnu()`: 512 NUL bytes, magic `"ustar "`, version `" \0"`, mtime `"00000000000\0"`;
 *    `Header.ustar()` (PAX headers only): magic `"ustar\0"`, version `"00"`, mtime likewise.
 *  - numeric fields are octal, zero-padded, NUL-terminated and fill the field (`octal_into`);
 *    uid/gid ≥ 2^21 and sizes ≥ 2^33 use the base-256 extension (`num_field_wrapper_into`).
 *  - the checksum is 7 octal digits + NUL (tar-rs fills the field; GNU tar writes 6 + NUL + space).
 *  - paths are rebuilt from Rust `Path::components()` (leading `./` dropped unless alone, `//`
 *    collapsed, interior `.` dropped, trailing `/` kept). Like tar-rs, a path is written
 *    component by component, each followed by one NUL when there is room, and nothing else in the
 *    field is cleared: a header reused for a second entry keeps stale bytes after the NUL, and a
 *    path that does not fit leaves a partial prefix behind. Both quirks show up in ostree-ext
 *    layers (hardlink entries reuse the header of the object they point to), so they are kept.
 *  - names over 100 bytes get a GNU `L` entry (`././@LongLink`, mode 0644, size = len + 1, data =
 *    the raw path + NUL) and the header keeps the first 100 bytes; link names likewise with `K`.
 *
 * The reader side (tar-reader.ts) is lenient about all of this; only the writer emulates.
 */

export const BLOCK = 512;

export const EntryType = {
  Regular: 0x30, // '0'
  Link: 0x31, // '1'
  Symlink: 0x32, // '2'
  Char: 0x33,
  Block: 0x34,
  Directory: 0x35, // '5'
  Fifo: 0x36,
  Continuous: 0x37,
  GNULongName: 0x4c, // 'L'
  GNULongLink: 0x4b, // 'K'
  XHeader: 0x78, // 'x'
  XGlobalHeader: 0x67, // 'g'
} as const;

// Field offsets and lengths (old/GNU/ustar share the first 345 bytes).
export const F = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  cksum: [148, 8],
  type: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

/** An error from path encoding (too long, `..`, absolute, NUL), as tar-rs reports it. */
export class TarPathError extends Error {}

function field(buf: Buffer, f: readonly [number, number]): Buffer {
  return buf.subarray(f[0], f[0] + f[1]);
}

/** tar-rs `octal_into`: last byte NUL, digits right-aligned, '0'-padded. */
function octalInto(dst: Buffer, val: number | bigint): void {
  const o = val.toString(8);
  dst[dst.length - 1] = 0;
  for (let i = dst.length - 2, j = o.length - 1; i >= 0; i--, j--) dst[i] = j >= 0 ? o.charCodeAt(j) : 0x30;
}

/** tar-rs `numeric_extended_into`: big-endian u64 in the last 8 bytes, high bit of byte 0 set. */
function numericExtendedInto(dst: Buffer, src: bigint): void {
  dst.fill(0);
  for (let i = 0; i < 8; i++) dst[dst.length - 1 - i] = Number((src >> BigInt(8 * i)) & 0xffn);
  dst[0]! |= 0x80;
}

function numFieldInto(dst: Buffer, v: number | bigint): void {
  const src = BigInt(v);
  if (src >= 8589934592n || (src >= 2097152n && dst.length === 8)) numericExtendedInto(dst, src);
  else octalInto(dst, src);
}

/** tar-rs `copy_into`: bytes, then one NUL if there is room; the rest untouched. */
function copyInto(slot: Buffer, bytes: Buffer): void {
  if (bytes.length > slot.length) throw new TarPathError('provided value is too long');
  if (bytes.includes(0)) throw new TarPathError('provided value contains a nul byte');
  bytes.copy(slot, 0);
  if (bytes.length < slot.length) slot[bytes.length] = 0;
}

type Component = { kind: 'root' | 'cur' | 'parent' | 'normal'; text: string };

/** Rust `Path::components()` on a Unix path string. */
export function rustComponents(p: string): Component[] {
  const out: Component[] = [];
  const parts = p.split('/');
  if (p.startsWith('/')) out.push({ kind: 'root', text: '/' });
  for (let i = 0; i < parts.length; i++) {
    const s = parts[i]!;
    if (s === '') continue;
    if (s === '.') {
      // Kept only as the first component of a relative path.
      if (i === 0) out.push({ kind: 'cur', text: '.' });
      continue;
    }
    out.push({ kind: s === '..' ? 'parent' : 'normal', text: s });
  }
  return out;
}

/** Paths whose components are exactly their `/`-separated parts (the common case). */
const SIMPLE_PATH = /^(?!\.{1,2}(?:\/|$))(?!.*\/\.{1,2}(?:\/|$))[^/\0]+(?:\/[^/\0]+)*$/;

/**
 * tar-rs `copy_path_into_inner` (allow_absolute = false). Returns null on success, else the
 * error message; like tar-rs, pieces written before the failure stay in the field.
 */
function copyPathInto(field0: Buffer, path: string, isLinkName: boolean, truncatedGnuLong: boolean): string | null {
  if (SIMPLE_PATH.test(path)) {
    // Fast path: no `.`/`..`/empty components, not absolute, no trailing slash.
    const n = Buffer.byteLength(path, 'utf8');
    const room = field0.length;
    if (n <= room) {
      field0.write(path, 0, 'utf8');
      if (n < room) field0[n] = 0;
      return null;
    }
    if (n === path.length) {
      // ASCII and too long: tar-rs copies component, "/", component, … and stops at the first
      // piece that does not fit; the field keeps the pieces that did, plus one NUL after them.
      let k: number;
      if (path.charCodeAt(room - 1) === 0x2f || path.charCodeAt(room) === 0x2f) k = room;
      else k = path.lastIndexOf('/', room - 1) + 1;
      if (k > 0) {
        field0.write(path.slice(0, k), 0, 'latin1');
        if (k < room) field0[k] = 0;
      }
      return 'provided value is too long';
    }
  }
  let off = 0;
  const room = field0.length;
  let emitted = false;
  let needsSlash = false;
  const copy = (text: string): string | null => {
    const n = Buffer.byteLength(text, 'utf8');
    if (n > room - off) return 'provided value is too long';
    field0.write(text, off, 'utf8');
    off += n;
    if (off < room) field0[off] = 0;
    return null;
  };
  const comps = rustComponents(path);
  for (let i = 0; i < comps.length; i++) {
    const c = comps[i]!;
    if (c.text.includes('\0')) return 'provided value contains a nul byte';
    if (!isLinkName) {
      if (c.kind === 'root') return 'paths in archives must be relative';
      if (c.kind === 'parent' && (!truncatedGnuLong || i + 1 < comps.length)) return 'paths in archives must not have `..`';
      if (c.kind === 'cur' && comps.length !== 1) continue;
    }
    let err = needsSlash ? copy('/') : null;
    if (err) return err;
    err = copy(c.text);
    if (err) return err;
    if (c.text !== '/') needsSlash = true;
    emitted = true;
  }
  if (!emitted) return 'paths in archives must have at least one component';
  if (path.endsWith('/')) return copy('/');
  return null;
}

function check(err: string | null): void {
  if (err !== null) throw new TarPathError(err);
}

/** A 512-byte tar header with tar-rs's setters. */
export class Header {
  readonly buf: Buffer;

  private constructor(buf: Buffer) {
    this.buf = buf;
  }

  static gnu(): Header {
    const h = new Header(Buffer.alloc(BLOCK));
    h.buf.write('ustar ', F.magic[0], 'latin1');
    h.buf.write(' \0', F.version[0], 'latin1');
    h.setMtime(0);
    return h;
  }

  static ustar(): Header {
    const h = new Header(Buffer.alloc(BLOCK));
    h.buf.write('ustar\0', F.magic[0], 'latin1');
    h.buf.write('00', F.version[0], 'latin1');
    h.setMtime(0);
    return h;
  }

  clone(): Header {
    return new Header(Buffer.from(this.buf));
  }

  setMode(mode: number): void {
    octalInto(field(this.buf, F.mode), mode);
  }
  setUid(uid: number): void {
    numFieldInto(field(this.buf, F.uid), uid);
  }
  setGid(gid: number): void {
    numFieldInto(field(this.buf, F.gid), gid);
  }
  setSize(size: number): void {
    numFieldInto(field(this.buf, F.size), size);
  }
  setMtime(mtime: number): void {
    numFieldInto(field(this.buf, F.mtime), mtime);
  }
  setEntryType(t: number): void {
    this.buf[F.type[0]] = t;
  }
  entryType(): number {
    return this.buf[F.type[0]]!;
  }
  /** The size field, read back (octal or base-256). */
  size(): number {
    return parseNumeric(field(this.buf, F.size));
  }

  setPath(path: string): void {
    check(this.trySetPath(path));
  }
  /** setPath without throwing: null, or tar-rs's error message. */
  trySetPath(path: string): string | null {
    return copyPathInto(field(this.buf, F.name), path, false, false);
  }
  setTruncatedPathForGnuHeader(path: string): void {
    check(copyPathInto(field(this.buf, F.name), path, false, true));
  }
  setLinkName(path: string): void {
    check(this.trySetLinkName(path));
  }
  trySetLinkName(path: string): string | null {
    return copyPathInto(field(this.buf, F.linkname), path, true, false);
  }
  setLinkNameLiteral(bytes: string): void {
    copyInto(field(this.buf, F.linkname), Buffer.from(bytes, 'utf8'));
  }

  setCksum(): void {
    const b = this.buf;
    let sum = 8 * 0x20; // the checksum field counts as spaces
    for (let i = 0; i < 148; i++) sum += b[i]!;
    for (let i = 156; i < BLOCK; i++) sum += b[i]!;
    octalInto(field(b, F.cksum), sum);
  }
}

// ---------------------------------------------------------------------------------------------
// Reader side, shared by the tar readers (container/tar-reader.ts, composefs/sources/layer-tar.ts;
// their PAX records: oci/tar-pax.ts)

/** A NUL-terminated header field (or GNU long name/link body) without its terminator. */
export function cstr(b: Buffer): Buffer {
  const z = b.indexOf(0);
  return z < 0 ? b : b.subarray(0, z);
}

/**
 * Parse a numeric header field: base-256, or octal read as tar-rs (ostree-ext's reader) reads it:
 * the text up to the first NUL, spaces trimmed, must be octal digits (empty reads as 0). So
 * `"0000001 777"` is refused as tar-rs refuses it, while bytes after the NUL are ignored.
 */
export function parseNumeric(f: Buffer): number {
  if (f[0]! & 0x80) {
    let v = BigInt(f[0]! & 0x7f);
    for (let i = 1; i < f.length; i++) v = (v << 8n) | BigInt(f[i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('numeric field too large');
    return Number(v);
  }
  let e = f.indexOf(0);
  if (e < 0) e = f.length;
  let s = 0;
  while (s < e && f[s] === 0x20) s++;
  while (e > s && f[e - 1] === 0x20) e--;
  let v = 0;
  for (let k = s; k < e; k++) {
    const d = f[k]! - 0x30;
    if (d < 0 || d > 7) throw new RangeError(`invalid octal digit in "${f.toString('latin1').replace(/\0/g, '\\0')}"`);
    v = v * 8 + d;
  }
  if (!Number.isSafeInteger(v)) throw new RangeError('numeric field too large');
  return v;
}

/** tar-rs `prepare_header` for GNU long-name/long-link entries. */
function longLinkHeader(size: number, type: number): Header {
  const h = Header.gnu();
  h.buf.write('././@LongLink', 0, 'latin1');
  h.setMode(0o644);
  h.setUid(0);
  h.setGid(0);
  h.setMtime(0);
  h.setSize(size + 1);
  h.setEntryType(type);
  h.setCksum();
  return h;
}

const ZERO_BLOCK = Buffer.alloc(BLOCK);

/** Zero bytes that pad `n` bytes of entry data to a whole block. */
export function padding(n: number): Buffer {
  const r = n % BLOCK;
  return r === 0 ? Buffer.alloc(0) : ZERO_BLOCK.subarray(0, BLOCK - r);
}

/** The end-of-archive marker tar-rs writes on `finish()`: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

/** Bytes of a whole entry whose data is in memory (header, data, padding). */
function entryBytes(h: Header, data: Buffer): Buffer[] {
  return data.length ? [h.buf, data, padding(data.length)] : [h.buf];
}

/**
 * tar-rs `prepare_header_path`: set the path, or emit a GNU `L` entry and keep the first 100
 * bytes (cut at a UTF-8 boundary). Returns the bytes to write before the header.
 */
export function prepareHeaderPath(h: Header, path: string): Buffer[] {
  const err = h.trySetPath(path);
  if (err === null) return [];
  {
    const data = Buffer.from(path, 'utf8');
    if (data.length < 100) throw new TarPathError(err);
    let end = 100;
    while (end > 0 && (data[end]! & 0xc0) === 0x80) end--;
    h.setTruncatedPathForGnuHeader(data.subarray(0, end).toString('utf8'));
    return entryBytes(longLinkHeader(data.length, EntryType.GNULongName), Buffer.concat([data, Buffer.from([0])]));
  }
}

/**
 * A link target written exactly as given, never normalized (`set_link_name_literal`): in the
 * header when it fits its 100 bytes, else in a GNU `K` entry (which tar-rs, Go and GNU tar all
 * read literally; tar-rs' `set_link_name_literal`, and so ostree-ext, fails there instead).
 */
export function prepareHeaderLinkLiteral(h: Header, target: string): Buffer[] {
  const data = Buffer.from(target, 'utf8');
  if (data.length <= 100) {
    h.setLinkNameLiteral(target);
    return [];
  }
  return longLinkEntry(data);
}

/** A GNU `K` entry holding a link target (NUL-terminated). */
function longLinkEntry(data: Buffer): Buffer[] {
  return entryBytes(longLinkHeader(data.length, EntryType.GNULongLink), Buffer.concat([data, Buffer.from([0])]));
}

/** tar-rs `prepare_header_link`: set the link name, or emit a GNU `K` entry. */
export function prepareHeaderLink(h: Header, target: string): Buffer[] {
  const err = h.trySetLinkName(target);
  if (err === null) return [];
  {
    const data = Buffer.from(target, 'utf8');
    if (data.length < 100) throw new TarPathError(err);
    return longLinkEntry(data);
  }
}

/**
 * tar-rs `append_pax_extensions`: one `x` entry (ustar header, empty name) holding
 * `"<len> <key>=<value>\n"` records; nothing when there are no records.
 */
export function paxExtensionBytes(records: Array<[string, Buffer]>): Buffer[] {
  if (records.length === 0) return [];
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    const keyLen = Buffer.byteLength(key, 'utf8');
    let lenLen = 1;
    let maxLen = 10;
    const restLen = 3 + keyLen + value.length;
    while (restLen + lenLen >= maxLen) {
      lenLen++;
      maxLen *= 10;
    }
    parts.push(Buffer.from(`${restLen + lenLen} ${key}=`, 'utf8'), value, Buffer.from('\n'));
  }
  const data = Buffer.concat(parts);
  const h = Header.ustar();
  h.setSize(data.length);
  h.setEntryType(EntryType.XHeader);
  h.setCksum();
  return entryBytes(h, data);
}
