/**
 * Split a tar stream (an OCI layer, uncompressed) into a splitstream the way composefs-oci's
 * `split_async` does: every header block (including PAX `x`/`g` and GNU `L`/`K` extension entries
 * with their data) goes inline; the content of a regular file (type `0`, NUL or `7`) larger than
 * 64 bytes (`INLINE_CONTENT_MAX_V0`) becomes an object (its digest = the file's fs-verity digest,
 * so it deduplicates with composefs image objects), and its padding goes inline; smaller content
 * goes inline. Sparse entries are refused, as composefs-oci does.
 *
 * Unlike composefs-oci, everything after the end-of-archive marker is kept inline too, so the
 * reassembled stream is always byte-identical to the input (its sha256 is the layer's diff_id).
 * Inline chunks are only cut between entries, never inside a header or an entry.
 */
import { SplitstreamFormatError } from './errors.js';
import type { SplitstreamWriter } from './splitstream.js';

export const INLINE_CONTENT_MAX = 64;
const BLOCK = 512;

/** Buffered reader over an async iterable of chunks. */
class Bytes {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;
  private readonly it: AsyncIterator<Uint8Array> | Iterator<Uint8Array>;
  pos = 0;

  constructor(src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.it = Symbol.asyncIterator in src ? (src as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]() : (src as Iterable<Uint8Array>)[Symbol.iterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.done) return false;
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return false;
    }
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    if (b.length) {
      this.chunks.push(b);
      this.buffered += b.length;
    }
    return true;
  }

  /** Exactly n bytes, or fewer only at end of input. */
  async read(n: number): Promise<Buffer> {
    while (this.buffered < n && (await this.fill()));
    const take = Math.min(n, this.buffered);
    const out = Buffer.allocUnsafe(take);
    let o = 0;
    while (o < take) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, take - o);
      c.copy(out, o, 0, k);
      o += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= take;
    this.pos += take;
    return out;
  }

  /** Exactly n bytes as a stream of chunks (fails on early end). */
  async *take(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0 && !(await this.fill())) throw new SplitstreamFormatError(`tar: unexpected end of input inside ${what}`);
      while (left > 0 && this.chunks.length) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, left);
        const piece = c.subarray(0, k);
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
        this.buffered -= k;
        this.pos += k;
        left -= k;
        yield piece;
      }
    }
  }

  /** Everything that is left. */
  async *rest(): AsyncGenerator<Buffer> {
    for (;;) {
      while (this.chunks.length) {
        const c = this.chunks.shift()!;
        this.buffered -= c.length;
        this.pos += c.length;
        yield c;
      }
      if (!(await this.fill())) return;
    }
  }
}

/** Numeric header field: octal text, or GNU base-256 (high bit of the first byte set). */
function numeric(b: Buffer, what: string, at: number): number {
  if (b[0]! & 0x80) {
    if (b[0] === 0xff) throw new SplitstreamFormatError(`tar: negative ${what} in header at offset ${at}`);
    let v = BigInt(b[0]! & 0x7f);
    for (let i = 1; i < b.length; i++) v = (v << 8n) | BigInt(b[i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new SplitstreamFormatError(`tar: ${what} too large in header at offset ${at}`);
    return Number(v);
  }
  const s = b.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new SplitstreamFormatError(`tar: bad ${what} "${s}" in header at offset ${at}`);
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  const s = h.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim();
  return /^[0-7]+$/.test(s) && parseInt(s, 8) === sum;
}

/** PAX records → map (only what we need: size and sparse markers). */
function paxRecords(data: Buffer, at: number): Map<string, string> {
  const m = new Map<string, string>();
  let p = 0;
  while (p < data.length) {
    if (data[p] === 0) break;
    const sp = data.indexOf(0x20, p);
    const len = sp > p ? parseInt(data.subarray(p, sp).toString('latin1'), 10) : NaN;
    if (!Number.isInteger(len) || len <= 0 || p + len > data.length) throw new SplitstreamFormatError(`tar: malformed PAX record in entry at offset ${at}`);
    const rec = data.subarray(sp + 1, p + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq > 0) m.set(rec.subarray(0, eq).toString('utf8'), rec.subarray(eq + 1).toString('utf8'));
    p += len;
  }
  return m;
}

export interface TarSplitStats {
  entries: number;
  externalFiles: number;
  externalBytes: number;
  inlineBytes: number;
}

/** Feed `tar` into `writer` (see the module comment). */
export async function splitTar(tar: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, writer: SplitstreamWriter): Promise<TarSplitStats> {
  const src = new Bytes(tar);
  const stats: TarSplitStats = { entries: 0, externalFiles: 0, externalBytes: 0, inlineBytes: 0 };
  const inline = (b: Buffer): void => {
    stats.inlineBytes += b.length;
    writer.writeInline(b);
  };
  let paxSize: number | undefined;
  let pendingExtension = false;
  for (;;) {
    const at = src.pos;
    const h = await src.read(BLOCK);
    if (h.length === 0) {
      if (pendingExtension) throw new SplitstreamFormatError(`tar: input ends after an extension header at offset ${at}`);
      break; // clean end at a header boundary
    }
    if (h.length < BLOCK) throw new SplitstreamFormatError(`tar: input ends inside a header at offset ${at}`);
    if (h.every((x) => x === 0)) {
      // End-of-archive marker: keep it and whatever follows inline, byte for byte.
      inline(h);
      for await (const c of src.rest()) inline(c);
      break;
    }
    if (!checksumOk(h)) throw new SplitstreamFormatError(`tar: bad header checksum at offset ${at}`);
    const type = String.fromCharCode(h[156]!);
    let size = numeric(h.subarray(124, 136), 'size', at);
    const padded = (n: number): number => Math.ceil(n / BLOCK) * BLOCK;
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      if (size > 16 << 20) throw new SplitstreamFormatError(`tar: ${type} extension entry of ${size} bytes at offset ${at} is too large`);
      const data = await src.read(padded(size));
      if (data.length < padded(size)) throw new SplitstreamFormatError(`tar: input ends inside the extension entry at offset ${at}`);
      if (type === 'x') {
        const recs = paxRecords(data.subarray(0, size), at);
        if ([...recs.keys()].some((k) => k.startsWith('GNU.sparse.'))) throw new SplitstreamFormatError(`tar: sparse entries are not supported (PAX at offset ${at})`);
        const s = recs.get('size');
        if (s !== undefined) {
          if (!/^\d+$/.test(s)) throw new SplitstreamFormatError(`tar: bad PAX size "${s}" at offset ${at}`);
          paxSize = Number(s);
        }
      }
      inline(h);
      inline(data);
      pendingExtension = type !== 'g';
      if (type === 'g') await writer.boundary();
      continue;
    }
    if (type === 'S') throw new SplitstreamFormatError(`tar: sparse entries are not supported (GNU sparse at offset ${at})`);
    if (paxSize !== undefined) size = paxSize;
    paxSize = undefined;
    pendingExtension = false;
    stats.entries++;
    const regular = type === '0' || type === '\0' || type === '7';
    inline(h);
    if (regular && size > INLINE_CONTENT_MAX) {
      const r = await writer.writeExternal(src.take(size, `the content of the entry at offset ${at}`));
      if (r.size !== size) throw new SplitstreamFormatError(`tar: entry at offset ${at}: stored ${r.size} bytes, expected ${size}`);
      stats.externalFiles++;
      stats.externalBytes += size;
      const pad = padded(size) - size;
      if (pad) {
        const p = await src.read(pad);
        if (p.length < pad) throw new SplitstreamFormatError(`tar: input ends inside the padding of the entry at offset ${at}`);
        inline(p);
      }
    } else if (size > 0) {
      for await (const c of src.take(padded(size), `the entry at offset ${at}`)) inline(c);
    }
    await writer.boundary();
  }
  return stats;
}
