/**
 * The writer's xattr bookkeeping without per-xattr objects: a table of distinct keys and a
 * content-addressed table of distinct (key, value) pairs held in typed arrays (§4.4 needs the
 * use count of every exact pair to decide what goes into the shared table).
 *
 * Values are described, not copied: a plain Buffer (`V_PLAIN`), or one derived from an inode —
 * the metacopy xattr (`[0, 36, 0, 1] ‖ digest`, `V_METACOPY`) or the redirect (`"/" ‖ payload`,
 * `V_REDIRECT`). This keeps the tens of thousands of unique metacopy/redirect values of a large
 * image from ever being materialized as strings or Buffers before they are written.
 */
import type { TreeNode } from '../../tree/model.js';
import {
  FS_VERITY_HASH_ALG_SHA256,
  METACOPY_SHA256_LEN,
  XATTR_ENTRY,
  xattrFilterBit,
  xattrPrefixOf,
} from './format.js';

export const V_PLAIN = 0;
export const V_METACOPY = 1;
export const V_REDIRECT = 2;

export interface KeyInfo {
  id: number;
  /** The key as a latin1 string (JS string order = strcmp order). */
  key: string;
  len: number;
  index: number;
  /** Name suffix bytes (key without its prefix). */
  suffix: Buffer;
  /** Name-filter bit. */
  bit: number;
}

export class KeyTable {
  readonly keys: KeyInfo[] = [];
  private readonly byStr = new Map<string, KeyInfo>();
  private readonly byBuf = new Map<Buffer, KeyInfo>();

  ofString(key: string): KeyInfo {
    let k = this.byStr.get(key);
    if (!k) {
      const b = Buffer.from(key, 'latin1');
      const { index, suffixStart } = xattrPrefixOf(b);
      k = {
        id: this.keys.length,
        key,
        len: b.length,
        index,
        suffix: Buffer.from(b.subarray(suffixStart)),
        bit: xattrFilterBit(index, b, suffixStart),
      };
      this.keys.push(k);
      this.byStr.set(key, k);
    }
    return k;
  }

  ofBuffer(key: Buffer): KeyInfo {
    let k = this.byBuf.get(key);
    if (!k) {
      k = this.ofString(key.toString('latin1'));
      if (this.byBuf.size < 100_000) this.byBuf.set(key, k);
    }
    return k;
  }
}

const METACOPY_HEADER = [0, METACOPY_SHA256_LEN, 0, FS_VERITY_HASH_ALG_SHA256] as const;

/** Distinct (key, value) pairs with use counts, in growable typed arrays. */
export class ValueTable {
  n = 0;
  key = new Int32Array(1024);
  kind = new Uint8Array(1024);
  /** Value length in bytes (prefix included). */
  len = new Int32Array(1024);
  count = new Int32Array(1024);
  /** Offset in the shared table, or -1. */
  shared = new Int32Array(1024);
  /** On-disk entry size (4-aligned). */
  size = new Int32Array(1024);
  hash = new Int32Array(1024);
  /** V_PLAIN: the value Buffer; V_METACOPY/V_REDIRECT: the inode's TreeNode. */
  ref: (Buffer | TreeNode)[] = [];
  private slots = new Int32Array(2048).fill(-1);

  constructor(private readonly keys: KeyTable) {}

  /** The value bytes without the derived prefix (digest, payload, or the plain value). */
  private static body(kind: number, ref: Buffer | TreeNode): Buffer {
    if (kind === V_PLAIN) return ref as Buffer;
    const n = ref as TreeNode;
    if (kind === V_METACOPY) return n.digest!;
    const p = n.payload!;
    const z = p.indexOf(0);
    return z >= 0 ? p.subarray(0, z) : p;
  }

  /** Count one use of (key, value); returns the pair's id. */
  intern(keyId: number, kind: number, ref: Buffer | TreeNode, len: number): number {
    const body = ValueTable.body(kind, ref);
    // Hash the length and at most 24 bytes (the first 8 and the last 16): digests and object
    // paths are random, labels differ near the end; equal hashes are compared in full anyway.
    let h = (0x811c9dc5 ^ Math.imul(keyId + 1, 0x9e3779b1) ^ Math.imul(len, 0x85ebca6b) ^ kind) | 0;
    const bl = body.length;
    if (bl <= 24) {
      for (let i = 0; i < bl; i++) h = Math.imul(h ^ body[i]!, 0x01000193);
    } else {
      for (let i = 0; i < 8; i++) h = Math.imul(h ^ body[i]!, 0x01000193);
      for (let i = bl - 16; i < bl; i++) h = Math.imul(h ^ body[i]!, 0x01000193);
    }
    h ^= h >>> 15;
    const mask = this.slots.length - 1;
    let s = h & mask;
    for (;;) {
      const id = this.slots[s]!;
      if (id < 0) break;
      if (
        this.hash[id] === h &&
        this.key[id] === keyId &&
        this.kind[id] === kind &&
        this.len[id] === len &&
        sameBytes(ValueTable.body(kind, this.ref[id]!), body)
      ) {
        this.count[id]!++;
        return id;
      }
      s = (s + 1) & mask;
    }
    const id = this.n++;
    if (id >= this.key.length) this.grow();
    this.key[id] = keyId;
    this.kind[id] = kind;
    this.len[id] = len;
    this.count[id] = 1;
    this.shared[id] = -1;
    const k = this.keys.keys[keyId]!;
    this.size[id] = (XATTR_ENTRY.SIZE + k.suffix.length + len + 3) & ~3;
    this.hash[id] = h;
    this.ref[id] = ref;
    this.slots[s] = id;
    if (this.n * 2 > this.slots.length) this.rehash();
    return id;
  }

  private grow(): void {
    const cap = this.key.length * 2;
    const g = <T extends Int32Array | Uint8Array>(a: T, C: new (n: number) => T): T => {
      const b = new C(cap);
      b.set(a);
      return b;
    };
    this.key = g(this.key, Int32Array);
    this.kind = g(this.kind, Uint8Array);
    this.len = g(this.len, Int32Array);
    this.count = g(this.count, Int32Array);
    this.shared = g(this.shared, Int32Array);
    this.size = g(this.size, Int32Array);
    this.hash = g(this.hash, Int32Array);
  }

  private rehash(): void {
    const slots = new Int32Array(this.slots.length * 2).fill(-1);
    const mask = slots.length - 1;
    for (let id = 0; id < this.n; id++) {
      let s = this.hash[id]! & mask;
      while (slots[s]! >= 0) s = (s + 1) & mask;
      slots[s] = id;
    }
    this.slots = slots;
  }

  /**
   * Assign shared-table offsets to every pair used by more than one inode, ordered like
   * libcomposefs: descending by key, then value length, then value bytes. Returns the ids in
   * table order and the table size.
   */
  assignShared(): { ids: number[]; size: number } {
    const ids: number[] = [];
    for (let id = 0; id < this.n; id++) if (this.count[id]! > 1) ids.push(id);
    const keys = this.keys.keys;
    ids.sort((a, b) => {
      const ka = keys[this.key[a]!]!.key;
      const kb = keys[this.key[b]!]!.key;
      if (ka !== kb) return ka < kb ? 1 : -1;
      const la = this.len[a]!;
      const lb = this.len[b]!;
      if (la !== lb) return lb - la;
      // same key ⇒ same kind ⇒ same prefix: compare the bodies (memcmp, reversed)
      return Buffer.compare(ValueTable.body(this.kind[b]!, this.ref[b]!), ValueTable.body(this.kind[a]!, this.ref[a]!));
    });
    let off = 0;
    for (const id of ids) {
      this.shared[id] = off;
      off += this.size[id]!;
    }
    return { ids, size: off };
  }

  /** Write the xattr entry of pair `id` at buf[p]; returns the offset after it. */
  writeEntry(buf: Buffer, p: number, id: number): number {
    const k = this.keys.keys[this.key[id]!]!;
    const kind = this.kind[id]!;
    const len = this.len[id]!;
    buf[p + XATTR_ENTRY.nameLen] = k.suffix.length & 0xff;
    buf[p + XATTR_ENTRY.nameIndex] = k.index;
    buf[p + XATTR_ENTRY.valueSize] = len & 0xff;
    buf[p + XATTR_ENTRY.valueSize + 1] = len >>> 8;
    let q = p + XATTR_ENTRY.SIZE;
    q = put(buf, q, k.suffix);
    if (len > 0) {
      if (kind === V_METACOPY) {
        for (const c of METACOPY_HEADER) buf[q++] = c;
      } else if (kind === V_REDIRECT) {
        buf[q++] = 0x2f;
      }
      put(buf, q, ValueTable.body(kind, this.ref[id]!));
    }
    return p + this.size[id]!;
  }
}

function put(buf: Buffer, q: number, src: Uint8Array): number {
  const n = src.length;
  if (n <= 64) for (let i = 0; i < n; i++) buf[q + i] = src[i]!;
  else buf.set(src, q);
  return q + n;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  const n = a.length;
  if (n !== b.length) return false;
  if (n > 64) return Buffer.compare(a, b) === 0;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}
