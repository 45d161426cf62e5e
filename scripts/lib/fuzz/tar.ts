/**
 * A small tar codec for the fuzzer, independent of src/container: it reads the (valid) layers the
 * project writes into entries, and writes whatever entries it is given — `../x`, `/abs`, names of
 * any length (PAX `path`/`linkpath`), arbitrary PAX records (raw bytes), any type flag — with
 * correct header checksums, so the importer's own checks are what is tested.
 */

export interface Entry {
  name: string;
  /** Type flag character: '0' file, '1' hardlink, '2' symlink, '5' directory, … */
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname: string;
  data: Buffer;
  /** PAX records that apply to this entry (raw values), in order. */
  pax: Array<[string, Buffer]>;
}

const BLOCK = 512;

function cstr(b: Buffer): string {
  const z = b.indexOf(0);
  return (z < 0 ? b : b.subarray(0, z)).toString('utf8');
}

function num(b: Buffer): number {
  if (b[0]! & 0x80) {
    let v = 0;
    for (let i = 1; i < b.length; i++) v = v * 256 + b[i]!;
    return v;
  }
  const s = b.toString('latin1').replace(/\0.*$/s, '').trim();
  return s ? parseInt(s, 8) : 0;
}

function parsePax(data: Buffer): Array<[string, Buffer]> {
  const out: Array<[string, Buffer]> = [];
  let off = 0;
  while (off < data.length && data[off] !== 0) {
    const sp = data.indexOf(0x20, off);
    const len = Number(data.subarray(off, sp).toString('latin1'));
    const rec = data.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    out.push([rec.subarray(0, eq).toString('utf8'), Buffer.from(rec.subarray(eq + 1))]);
    off += len;
  }
  return out;
}

/** Parse a valid tar (ustar / GNU / PAX) into entries. Throws on anything unexpected. */
export function parseTar(buf: Buffer): Entry[] {
  const out: Entry[] = [];
  let off = 0;
  let pax: Array<[string, Buffer]> = [];
  let longName: string | undefined;
  let longLink: string | undefined;
  while (off + BLOCK <= buf.length) {
    const h = buf.subarray(off, off + BLOCK);
    if (h.every((x) => x === 0)) break;
    const type = String.fromCharCode(h[156]! || 0x30);
    const size = num(h.subarray(124, 136));
    const data = buf.subarray(off + BLOCK, off + BLOCK + size);
    if (data.length !== size) throw new Error(`fuzz tar: truncated entry at ${off}`);
    off += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x') {
      pax = pax.concat(parsePax(data));
      continue;
    }
    if (type === 'g') continue;
    if (type === 'L') {
      longName = cstr(data);
      continue;
    }
    if (type === 'K') {
      longLink = cstr(data);
      continue;
    }
    let name = cstr(h.subarray(0, 100));
    if (h.subarray(257, 263).toString('latin1') === 'ustar\0') {
      const prefix = cstr(h.subarray(345, 500));
      if (prefix) name = `${prefix}/${name}`;
    }
    const e: Entry = {
      name: longName ?? name,
      type,
      mode: num(h.subarray(100, 108)),
      uid: num(h.subarray(108, 116)),
      gid: num(h.subarray(116, 124)),
      mtime: num(h.subarray(136, 148)),
      linkname: longLink ?? cstr(h.subarray(157, 257)),
      data: Buffer.from(data),
      pax: [],
    };
    for (const [k, v] of pax) {
      if (k === 'path') e.name = v.toString('utf8');
      else if (k === 'linkpath') e.linkname = v.toString('utf8');
      else if (k === 'size' || k === 'uid' || k === 'gid' || k === 'mtime') continue;
      else e.pax.push([k, v]);
    }
    out.push(e);
    pax = [];
    longName = longLink = undefined;
  }
  return out;
}

function octal(n: number, len: number): string {
  return `${Math.max(0, Math.floor(n)).toString(8).padStart(len - 1, '0')}\0`;
}

function fits(n: number, len: number): boolean {
  return n >= 0 && n < 8 ** (len - 1);
}

/** One 512-byte header with a correct checksum (fields that do not fit are left to PAX). */
export function header(name: string, type: string, f: { mode: number; uid: number; gid: number; size: number; mtime: number; linkname: string }): Buffer {
  const h = Buffer.alloc(BLOCK);
  Buffer.from(name, 'utf8').subarray(0, 100).copy(h, 0);
  h.write(octal(f.mode & 0o7777777, 8), 100, 'latin1');
  h.write(octal(fits(f.uid, 8) ? f.uid : 0, 8), 108, 'latin1');
  h.write(octal(fits(f.gid, 8) ? f.gid : 0, 8), 116, 'latin1');
  h.write(octal(fits(f.size, 12) ? f.size : 0, 12), 124, 'latin1');
  h.write(octal(fits(f.mtime, 12) ? f.mtime : 0, 12), 136, 'latin1');
  h.write(type.slice(0, 1), 156, 'latin1');
  Buffer.from(f.linkname, 'utf8').subarray(0, 100).copy(h, 157);
  h.write('ustar\x0000', 257, 'latin1');
  fixChecksum(h);
  return h;
}

/** Recompute a header block's checksum in place. */
export function fixChecksum(h: Buffer): void {
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i]!;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

function paxRecord(k: string, v: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${k}=`, 'utf8'), v, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

const pad = (n: number): Buffer => Buffer.alloc((BLOCK - (n % BLOCK)) % BLOCK);

/** Serialize entries (PAX records for long names/links and the entry's own records), with the end marker. */
export function writeTar(entries: Entry[], opts: { endMarker?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const dataSize = e.type === '0' || e.type === '7' || e.type === '\0' ? e.data.length : 0;
    const recs: Array<[string, Buffer]> = [];
    if (Buffer.byteLength(e.name) > 100) recs.push(['path', Buffer.from(e.name, 'utf8')]);
    if (Buffer.byteLength(e.linkname) > 100) recs.push(['linkpath', Buffer.from(e.linkname, 'utf8')]);
    if (!fits(dataSize, 12)) recs.push(['size', Buffer.from(String(dataSize))]);
    if (!fits(e.uid, 8)) recs.push(['uid', Buffer.from(String(e.uid))]);
    if (!fits(e.gid, 8)) recs.push(['gid', Buffer.from(String(e.gid))]);
    recs.push(...e.pax);
    if (recs.length) {
      const data = Buffer.concat(recs.map(([k, v]) => paxRecord(k, v)));
      parts.push(header('././@PaxHeader', 'x', { mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: 0, linkname: '' }), data, pad(data.length));
    }
    parts.push(header(e.name, e.type, { mode: e.mode, uid: e.uid, gid: e.gid, size: dataSize, mtime: e.mtime, linkname: e.linkname }));
    if (dataSize) parts.push(e.data, pad(dataSize));
  }
  if (opts.endMarker !== false) parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

/** Byte offsets of every header block of a (valid) tar, for header-level mutations. */
export function headerOffsets(buf: Buffer): number[] {
  const out: number[] = [];
  let off = 0;
  while (off + BLOCK <= buf.length) {
    const h = buf.subarray(off, off + BLOCK);
    if (h.every((x) => x === 0)) break;
    out.push(off);
    off += BLOCK + Math.ceil(num(h.subarray(124, 136)) / BLOCK) * BLOCK;
  }
  return out;
}

export function cloneEntry(e: Entry): Entry {
  return { ...e, data: Buffer.from(e.data), pax: e.pax.map(([k, v]) => [k, Buffer.from(v)]) };
}
