/**
 * GVariant serialization in normal form (shared/specs/ostree-objects.md §1), pure TypeScript.
 *
 * Values:  y n q i u h d → number · x t → bigint · b → boolean · s o g → string ·
 *          ay → Buffer · aT → T[] · mT → T | null · (…) and {KV} → array of members ·
 *          v → { type, value }.
 *
 * `decode` accepts only normal-form data: it decodes with bounds checks everywhere and then
 * re-encodes and compares, so a non-normal input (bad padding, wide offsets, trailing bytes…) is
 * rejected with a GVariantError naming where it was found, never an exception from deep inside.
 */
import { GVariantError } from '../errors.js';

export interface Variant {
  type: string;
  value: GValue;
}
export type GValue = number | bigint | boolean | string | Buffer | Variant | null | GValue[];

type TypeInfo =
  | { kind: 'basic'; code: string; align: number; fixed: number | null; str: string }
  | { kind: 'variant'; align: 8; fixed: null; str: string }
  | { kind: 'array'; elem: TypeInfo; align: number; fixed: null; str: string }
  | { kind: 'maybe'; elem: TypeInfo; align: number; fixed: null; str: string }
  | { kind: 'tuple'; members: TypeInfo[]; align: number; fixed: number | null; str: string; dict: boolean };

const BASIC: Record<string, [number, number | null]> = {
  y: [1, 1],
  b: [1, 1],
  n: [2, 2],
  q: [2, 2],
  i: [4, 4],
  u: [4, 4],
  h: [4, 4],
  x: [8, 8],
  t: [8, 8],
  d: [8, 8],
  s: [1, null],
  o: [1, null],
  g: [1, null],
};

const typeCache = new Map<string, TypeInfo>();

const alignUp = (x: number, a: number): number => (x + a - 1) & ~(a - 1);

/** Parse one complete type string (cached). Throws GVariantError for invalid type strings. */
export function typeInfo(type: string): TypeInfo {
  let t = typeCache.get(type);
  if (t) return t;
  const [info, end] = parseTypeAt(type, 0, 0);
  if (end !== type.length) throw new GVariantError(`invalid GVariant type string "${type}"`);
  t = info;
  if (typeCache.size < 1000) typeCache.set(type, t);
  return t;
}

/** True when `type` is one valid, complete type string. */
export function isValidType(type: string): boolean {
  try {
    typeInfo(type);
    return true;
  } catch {
    return false;
  }
}

function parseTypeAt(s: string, pos: number, depth: number): [TypeInfo, number] {
  if (depth > 64) throw new GVariantError(`GVariant type string nested too deeply: "${s}"`);
  const c = s[pos];
  if (c === undefined) throw new GVariantError(`truncated GVariant type string "${s}"`);
  const basic = BASIC[c];
  if (basic) return [{ kind: 'basic', code: c, align: basic[0], fixed: basic[1], str: c }, pos + 1];
  if (c === 'v') return [{ kind: 'variant', align: 8, fixed: null, str: 'v' }, pos + 1];
  if (c === 'a' || c === 'm') {
    const [elem, end] = parseTypeAt(s, pos + 1, depth + 1);
    const str = s.slice(pos, end);
    return [{ kind: c === 'a' ? 'array' : 'maybe', elem, align: elem.align, fixed: null, str }, end];
  }
  if (c === '(' || c === '{') {
    const close = c === '(' ? ')' : '}';
    const members: TypeInfo[] = [];
    let p = pos + 1;
    while (s[p] !== close) {
      if (p >= s.length) throw new GVariantError(`unterminated GVariant type string "${s}"`);
      const [m, end] = parseTypeAt(s, p, depth + 1);
      members.push(m);
      p = end;
    }
    if (c === '{' && (members.length !== 2 || members[0]!.kind !== 'basic')) {
      throw new GVariantError(`invalid dict entry type in "${s}"`);
    }
    let align = 1;
    let fixed: number | null = 0;
    for (const m of members) {
      align = Math.max(align, m.align);
      if (m.fixed === null) fixed = null;
      else if (fixed !== null) fixed = alignUp(fixed, m.align) + m.fixed;
    }
    if (fixed !== null) fixed = members.length === 0 ? 1 : alignUp(fixed, align);
    return [{ kind: 'tuple', members, align, fixed, str: s.slice(pos, p + 1), dict: c === '{' }, p + 1];
  }
  throw new GVariantError(`invalid character "${c}" in GVariant type string "${s}"`);
}

// ---------------------------------------------------------------------------------------------
// Decoding

// ignoreBOM: a leading U+FEFF is part of the string (GVariant keeps it; stripping it made such
// strings fail the normal-form check).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes per framing offset in a container of `total` bytes. */
export function offsetSize(total: number): number {
  if (total === 0) return 0;
  if (total <= 0xff) return 1;
  if (total <= 0xffff) return 2;
  if (total <= 0xffffffff) return 4;
  return 8;
}

/** A little-endian framing offset of `z` bytes (64-bit values past 2^53 saturate). */
export function readOffset(buf: Buffer, at: number, z: number): number {
  switch (z) {
    case 1:
      return buf[at]!;
    case 2:
      return buf.readUInt16LE(at);
    case 4:
      return buf.readUInt32LE(at);
    default: {
      const v = buf.readBigUInt64LE(at);
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    }
  }
}

function fail(where: string, msg: string): never {
  throw new GVariantError(`${where}: ${msg}`);
}

function decodeValue(t: TypeInfo, buf: Buffer, where: string, depth: number): GValue {
  if (depth > 128) fail(where, 'nested too deeply');
  if (t.fixed !== null && buf.length !== t.fixed) {
    fail(where, `expected ${t.fixed} bytes for "${t.str}", found ${buf.length}`);
  }
  switch (t.kind) {
    case 'basic':
      return decodeBasic(t.code, buf, where);
    case 'variant': {
      const nul = buf.lastIndexOf(0);
      if (nul < 0) fail(where, 'variant without type separator');
      const type = buf.subarray(nul + 1).toString('latin1');
      let inner: TypeInfo;
      try {
        inner = typeInfo(type);
      } catch {
        fail(where, `variant has invalid type string "${type}"`);
      }
      return { type, value: decodeValue(inner, buf.subarray(0, nul), `${where}<${type}>`, depth + 1) };
    }
    case 'maybe': {
      if (buf.length === 0) return null;
      if (t.elem.fixed !== null) return decodeValue(t.elem, buf, where, depth + 1);
      if (buf[buf.length - 1] !== 0) fail(where, 'maybe value not terminated by 0');
      return decodeValue(t.elem, buf.subarray(0, buf.length - 1), where, depth + 1);
    }
    case 'array':
      return decodeArray(t, buf, where, depth);
    case 'tuple':
      return decodeTuple(t, buf, where, depth);
  }
}

function decodeBasic(code: string, buf: Buffer, where: string): GValue {
  switch (code) {
    case 'y':
      return buf[0]!;
    case 'b':
      if (buf[0]! > 1) fail(where, `boolean byte ${buf[0]} is not 0 or 1`);
      return buf[0] === 1;
    case 'n':
      return buf.readInt16LE(0);
    case 'q':
      return buf.readUInt16LE(0);
    case 'i':
    case 'h':
      return buf.readInt32LE(0);
    case 'u':
      return buf.readUInt32LE(0);
    case 'x':
      return buf.readBigInt64LE(0);
    case 't':
      return buf.readBigUInt64LE(0);
    case 'd':
      return buf.readDoubleLE(0);
    default: {
      // s, o, g
      if (buf.length === 0 || buf[buf.length - 1] !== 0) fail(where, 'string is not NUL-terminated');
      const body = buf.subarray(0, buf.length - 1);
      if (body.includes(0)) fail(where, 'string contains an embedded NUL');
      let s: string;
      try {
        s = utf8.decode(body);
      } catch {
        fail(where, 'string is not valid UTF-8');
      }
      if (code === 'o' && !/^\/$|^(\/[A-Za-z0-9_]+)+$/.test(s)) fail(where, `invalid object path "${s}"`);
      if (code === 'g' && !isValidSignature(s)) fail(where, `invalid signature "${s}"`);
      return s;
    }
  }
}

function isValidSignature(s: string): boolean {
  try {
    let p = 0;
    while (p < s.length) p = parseTypeAt(s, p, 0)[1];
    return true;
  } catch {
    return false;
  }
}

function decodeArray(t: Extract<TypeInfo, { kind: 'array' }>, buf: Buffer, where: string, depth: number): GValue {
  const elem = t.elem;
  if (elem.kind === 'basic' && elem.code === 'y') return Buffer.from(buf);
  const n = buf.length;
  if (n === 0) return [];
  const out: GValue[] = [];
  if (elem.fixed !== null) {
    if (n % elem.fixed !== 0) fail(where, `array of "${elem.str}" has ${n} bytes, not a multiple of ${elem.fixed}`);
    for (let i = 0; i < n; i += elem.fixed) {
      out.push(decodeValue(elem, buf.subarray(i, i + elem.fixed), `${where}[${i / elem.fixed}]`, depth + 1));
    }
    return out;
  }
  const z = offsetSize(n);
  if (n < z) fail(where, 'truncated array');
  const tableStart = readOffset(buf, n - z, z);
  if (tableStart > n - z || (n - tableStart) % z !== 0) fail(where, `bad array offset table start ${tableStart}`);
  const count = (n - tableStart) / z;
  let prevEnd = 0;
  for (let i = 0; i < count; i++) {
    const end = readOffset(buf, tableStart + i * z, z);
    const start = alignUp(prevEnd, elem.align);
    if (end < start || end > tableStart) fail(`${where}[${i}]`, `element offset ${end} out of range`);
    out.push(decodeValue(elem, buf.subarray(start, end), `${where}[${i}]`, depth + 1));
    prevEnd = end;
  }
  return out;
}

function decodeTuple(t: Extract<TypeInfo, { kind: 'tuple' }>, buf: Buffer, where: string, depth: number): GValue {
  const n = buf.length;
  const members = t.members;
  const last = members.length - 1;
  let nOff = 0;
  for (let i = 0; i < members.length; i++) if (members[i]!.fixed === null && i !== last) nOff++;
  const z = t.fixed !== null ? 0 : offsetSize(n);
  if (nOff * z > n) fail(where, 'truncated tuple');
  const bodyEnd = n - nOff * z;
  const out: GValue[] = [];
  let pos = 0;
  let k = 0;
  for (let i = 0; i < members.length; i++) {
    const m = members[i]!;
    const start = alignUp(pos, m.align);
    let end: number;
    if (m.fixed !== null) end = start + m.fixed;
    else if (i === last) end = bodyEnd;
    else {
      end = readOffset(buf, n - (k + 1) * z, z);
      k++;
    }
    if (start > end || end > bodyEnd) fail(`${where}.${i}`, `member bounds ${start}..${end} outside ${bodyEnd} bytes`);
    out.push(decodeValue(m, buf.subarray(start, end), `${where}.${i}`, depth + 1));
    pos = end;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Encoding

function encodeValue(t: TypeInfo, v: GValue, where: string): Buffer {
  switch (t.kind) {
    case 'basic':
      return encodeBasic(t.code, v, where);
    case 'variant': {
      const vv = v as Variant;
      if (!vv || typeof vv !== 'object' || typeof (vv as Variant).type !== 'string') {
        fail(where, 'expected a { type, value } variant');
      }
      const inner = typeInfo(vv.type);
      return Buffer.concat([encodeValue(inner, vv.value, `${where}<${vv.type}>`), Buffer.from([0]), Buffer.from(vv.type, 'latin1')]);
    }
    case 'maybe': {
      if (v === null || v === undefined) return Buffer.alloc(0);
      const inner = encodeValue(t.elem, v, where);
      return t.elem.fixed !== null ? inner : Buffer.concat([inner, Buffer.from([0])]);
    }
    case 'array': {
      if (t.elem.kind === 'basic' && t.elem.code === 'y') {
        if (!Buffer.isBuffer(v) && !(v instanceof Uint8Array)) fail(where, 'expected a Buffer for "ay"');
        return Buffer.from(v as Uint8Array);
      }
      if (!Array.isArray(v)) fail(where, `expected an array for "${t.str}"`);
      if (t.elem.fixed !== null) return Buffer.concat(v.map((e, i) => encodeValue(t.elem, e, `${where}[${i}]`)));
      const parts: Buffer[] = [];
      const ends: number[] = [];
      let len = 0;
      v.forEach((e, i) => {
        const pad = alignUp(len, t.elem.align) - len;
        if (pad) parts.push(Buffer.alloc(pad));
        const b = encodeValue(t.elem, e, `${where}[${i}]`);
        parts.push(b);
        len += pad + b.length;
        ends.push(len);
      });
      return frame(parts, len, ends);
    }
    case 'tuple': {
      if (!Array.isArray(v) || v.length !== t.members.length) {
        fail(where, `expected ${t.members.length} members for "${t.str}"`);
      }
      if (t.members.length === 0) return Buffer.from([0]);
      const parts: Buffer[] = [];
      const offs: number[] = [];
      let len = 0;
      const last = t.members.length - 1;
      t.members.forEach((m, i) => {
        const pad = alignUp(len, m.align) - len;
        if (pad) parts.push(Buffer.alloc(pad));
        const b = encodeValue(m, v[i]!, `${where}.${i}`);
        parts.push(b);
        len += pad + b.length;
        if (m.fixed === null && i !== last) offs.push(len);
      });
      if (t.fixed !== null) {
        if (len < t.fixed) parts.push(Buffer.alloc(t.fixed - len));
        return Buffer.concat(parts);
      }
      return frame(parts, len, offs.reverse());
    }
  }
}

/** Append framing offsets of the smallest width that can address the whole container. */
function frame(parts: Buffer[], bodyLen: number, offsets: number[]): Buffer {
  if (offsets.length === 0) return Buffer.concat(parts);
  let z = 1;
  for (const cand of [1, 2, 4, 8]) {
    z = cand;
    if (cand === 8 || bodyLen + offsets.length * cand <= 2 ** (8 * cand) - 1) break;
  }
  const table = Buffer.alloc(offsets.length * z);
  offsets.forEach((o, i) => {
    if (z === 1) table[i] = o;
    else if (z === 2) table.writeUInt16LE(o, i * 2);
    else if (z === 4) table.writeUInt32LE(o, i * 4);
    else table.writeBigUInt64LE(BigInt(o), i * 8);
  });
  parts.push(table);
  return Buffer.concat(parts);
}

function encodeBasic(code: string, v: GValue, where: string): Buffer {
  const num = (lo: number, hi: number): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      fail(where, `expected an integer in ${lo}..${hi} for "${code}", got ${String(v)}`);
    }
    return v;
  };
  switch (code) {
    case 'y':
      return Buffer.from([num(0, 255)]);
    case 'b':
      if (typeof v !== 'boolean') fail(where, 'expected a boolean');
      return Buffer.from([v ? 1 : 0]);
    case 'n': {
      const b = Buffer.alloc(2);
      b.writeInt16LE(num(-32768, 32767));
      return b;
    }
    case 'q': {
      const b = Buffer.alloc(2);
      b.writeUInt16LE(num(0, 0xffff));
      return b;
    }
    case 'i':
    case 'h': {
      const b = Buffer.alloc(4);
      b.writeInt32LE(num(-0x80000000, 0x7fffffff));
      return b;
    }
    case 'u': {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(num(0, 0xffffffff));
      return b;
    }
    case 'x':
    case 't': {
      if (typeof v !== 'bigint') fail(where, `expected a bigint for "${code}"`);
      const b = Buffer.alloc(8);
      if (code === 'x') b.writeBigInt64LE(v);
      else b.writeBigUInt64LE(v);
      return b;
    }
    case 'd': {
      if (typeof v !== 'number') fail(where, 'expected a number for "d"');
      const b = Buffer.alloc(8);
      b.writeDoubleLE(v);
      return b;
    }
    default: {
      if (typeof v !== 'string') fail(where, `expected a string for "${code}"`);
      if (v.includes('\0')) fail(where, 'string contains NUL');
      return Buffer.concat([Buffer.from(v, 'utf8'), Buffer.from([0])]);
    }
  }
}

/** Serialize `value` as GVariant `type` in normal form. */
export function encode(type: string, value: GValue, what = type): Buffer {
  return encodeValue(typeInfo(type), value, what);
}

/**
 * Parse normal-form GVariant data of `type`. `what` names the object in error messages,
 * e.g. "commit 57c4…". Truncated, non-normal or ill-typed data throws GVariantError.
 */
export function decode(type: string, data: Buffer, what = type): GValue {
  const t = typeInfo(type);
  let value: GValue;
  try {
    value = decodeValue(t, data, what, 0);
  } catch (e) {
    if (e instanceof GVariantError) throw e;
    throw new GVariantError(`${what}: malformed ${type} data (${(e as Error).message})`);
  }
  const again = encodeValue(t, value, what);
  if (!again.equals(data)) {
    throw new GVariantError(`${what}: ${type} data is not in normal form`);
  }
  return value;
}

/** Convenience for `a{sv}`: an ordered list of [key, Variant] pairs (duplicates kept). */
export type VarDict = Array<[string, Variant]>;

/** First entry with that key, like g_variant_lookup_value (no type check). */
export function lookup(dict: VarDict, key: string): Variant | undefined {
  return dict.find(([k]) => k === key)?.[1];
}
