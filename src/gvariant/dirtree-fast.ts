/**
 * A reader for dirtree objects, `(a(say)a(sayay))`, that accepts only data already in GVariant
 * normal form and answers null for anything else. The generic codec decodes and then re-encodes
 * to prove normal form; a commit walk reads thousands of dirtrees, and that was a sixth of the
 * time of `composefs --repo`. On null the caller uses the generic codec, which produces the same
 * value or the precise error: so this reader may refuse more than the codec, never less.
 *
 * Layout (shared/specs/ostree-objects.md §1): a container of size n frames its variable-size
 * members with little-endian offsets of offsetSize(n) bytes; a tuple keeps the end offsets of its
 * non-last variable members at its end, last member's first (reverse order); an array of
 * variable-size elements ends with a table of each element's end offset. All alignments are 1.
 */
import { isUtf8 } from 'node:buffer';
import { offsetSize, readOffset } from './codec.js';

export interface RawDirTree {
  /** Names without their NUL; checksums as 32-byte views of the data. */
  files: Array<{ name: Buffer; checksum: Buffer }>;
  dirs: Array<{ name: Buffer; tree: Buffer; meta: Buffer }>;
}

/**
 * Normal form frames a container with the narrowest offsets that fit: `total` bytes holding `k`
 * offsets are in normal form only if no narrower width would hold the same body. (A body can be
 * framed consistently at two widths, e.g. 254 bytes + one offset: 255 with 1-byte, 256 with 2-byte
 * offsets.)
 */
function narrowest(total: number, k: number): boolean {
  const os = offsetSize(total);
  const body = total - k * os;
  for (const w of [1, 2, 4]) {
    if (w >= os) break;
    if (body + k * w <= 2 ** (8 * w) - 1) return false;
  }
  return true;
}

/** The elements of an array of variable-size elements, as [start, end) pairs; null if malformed. */
function arrayElements(b: Buffer, start: number, end: number): Array<[number, number]> | null {
  const n = end - start;
  if (n === 0) return [];
  const os = offsetSize(n);
  if (n < os) return null;
  const table = readOffset(b, end - os, os);
  if (table > n - os || (n - table) % os !== 0) return null;
  if (!narrowest(n, (n - table) / os)) return null;
  const out: Array<[number, number]> = [];
  let from = 0;
  for (let at = start + table; at < end; at += os) {
    const to = readOffset(b, at, os);
    if (to < from || to > table) return null;
    out.push([start + from, start + to]);
    from = to;
  }
  return from === table ? out : null;
}

/** A NUL-terminated, NUL-free, UTF-8 string at [start, end): its bytes without the NUL, or null. */
function cString(b: Buffer, start: number, end: number): Buffer | null {
  if (end <= start || b[end - 1] !== 0) return null;
  const s = b.subarray(start, end - 1);
  if (s.includes(0) || !isUtf8(s)) return null;
  return s;
}

export function readDirTreeCanonical(b: Buffer): RawDirTree | null {
  const n = b.length;
  const os = offsetSize(n);
  if (n === 0 || n < os || !narrowest(n, 1)) return null;
  const filesEnd = readOffset(b, n - os, os);
  if (filesEnd > n - os) return null;
  const fileEls = arrayElements(b, 0, filesEnd);
  const dirEls = arrayElements(b, filesEnd, n - os);
  if (!fileEls || !dirEls) return null;
  const files: RawDirTree['files'] = [];
  for (const [s, e] of fileEls) {
    // (say): string, checksum, the string's end offset
    const m = e - s;
    const eos = offsetSize(m);
    if (m < eos || !narrowest(m, 1)) return null;
    const nameEnd = s + readOffset(b, e - eos, eos);
    if (nameEnd > e - eos || e - eos - nameEnd !== 32) return null;
    const name = cString(b, s, nameEnd);
    if (!name) return null;
    files.push({ name, checksum: b.subarray(nameEnd, nameEnd + 32) });
  }
  const dirs: RawDirTree['dirs'] = [];
  for (const [s, e] of dirEls) {
    // (sayay): string, tree, meta, then the tree's end offset, then the string's
    const m = e - s;
    const eos = offsetSize(m);
    if (m < 2 * eos || !narrowest(m, 2)) return null;
    const nameEnd = s + readOffset(b, e - eos, eos);
    const treeEnd = s + readOffset(b, e - 2 * eos, eos);
    if (treeEnd - nameEnd !== 32 || e - 2 * eos - treeEnd !== 32) return null;
    const name = cString(b, s, nameEnd);
    if (!name) return null;
    dirs.push({ name, tree: b.subarray(nameEnd, treeEnd), meta: b.subarray(treeEnd, treeEnd + 32) });
  }
  return { files, dirs };
}
