/**
 * A strict streaming tar reader for untrusted layers. It understands ustar, GNU (`L`/`K` long
 * names, base-256 numbers), PAX (`x` records: path, linkpath, size, uid, gid and raw-byte values
 * such as `SCHILY.xattr.*`; `g` records are parsed and ignored) and old v7 headers. Every header
 * checksum is verified; a stream that ends inside a header or an entry, or without the
 * end-of-archive marker, is an error naming the entry. After the marker the rest of the input is
 * drained (so digest/diffid checks of an enclosing stream still run at its end).
 *
 * Bodies are streamed: `next()` returns an entry whose data must be read with `body()`,
 * `readBody()` or `bodyStream()` (or is skipped automatically by the next `next()`).
 */
import { Readable } from 'node:stream';
import { ContainerFormatError } from './errors.js';
import { EntryExtensions, paxDecimal, parsePaxRecords } from '../oci/tar-pax.js';
import { BLOCK, cstr, F, parseNumeric } from './tar-header.js';

export interface TarEntry {
  /** Type flag as a character: '0' regular, '1' hardlink, '2' symlink, '5' directory, … */
  type: string;
  /** Entry name after GNU/PAX long-name resolution (raw, not normalized). */
  path: string;
  /** Link target (hardlinks, symlinks) after GNU/PAX resolution. */
  linkname: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** PAX records that applied to this entry (raw values), in stream order. */
  pax: Map<string, Buffer>;
  /** Byte offset of the entry's header in the stream. */
  offset: number;
}

const MAX_META_ENTRY = 1 << 20; // L/K/x/g entries larger than 1 MiB are refused

/** Buffered byte source over an async iterable of chunks. */
class ByteSource {
  private chunks: Buffer[] = [];
  private head = 0; // offset into chunks[0]
  private buffered = 0;
  private done = false;
  private readonly it: AsyncIterator<Buffer>;
  /** Total bytes consumed. */
  pos = 0;

  constructor(src: AsyncIterable<Buffer>) {
    this.it = src[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.done) return false;
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return false;
    }
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    if (b.length) {
      this.chunks.push(b);
      this.buffered += b.length;
    }
    return true;
  }

  /** Exactly n bytes, or null if the input ends first (partial data is consumed). */
  async take(n: number): Promise<Buffer | null> {
    while (this.buffered < n) if (!(await this.fill())) return null;
    this.pos += n;
    this.buffered -= n;
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.head += n;
      if (this.head === first.length) {
        this.chunks.shift();
        this.head = 0;
      }
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length - this.head, n - off);
      c.copy(out, off, this.head, this.head + k);
      off += k;
      this.head += k;
      if (this.head === c.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    return out;
  }

  /** Up to max bytes (at least 1), or null at end of input. */
  async takeSome(max: number): Promise<Buffer | null> {
    if (this.buffered === 0 && !(await this.fill())) return null;
    while (this.buffered === 0) if (!(await this.fill())) return null;
    const first = this.chunks[0]!;
    const k = Math.min(first.length - this.head, max);
    const out = first.subarray(this.head, this.head + k);
    this.head += k;
    this.pos += k;
    this.buffered -= k;
    if (this.head === first.length) {
      this.chunks.shift();
      this.head = 0;
    }
    return out;
  }

  /** Consume everything that is left; returns the number of bytes. */
  async drain(): Promise<number> {
    let n = this.buffered;
    this.chunks = [];
    this.head = 0;
    this.buffered = 0;
    while (!this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else n += (r.value as Buffer).length;
    }
    this.pos += n;
    return n;
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

export class TarReader {
  private readonly src: ByteSource;
  private remaining = 0; // body bytes of the current entry not read yet
  private pad = 0; // padding after the current body
  private current: TarEntry | null = null;
  private ended = false;

  /** `what` names the stream in errors, e.g. `layer 1 (sha256:…)`. */
  constructor(
    input: AsyncIterable<Buffer>,
    readonly what: string,
  ) {
    this.src = new ByteSource(input);
  }

  private fail(msg: string, entry?: TarEntry | null, details?: Record<string, unknown>): never {
    const at = entry ? ` (entry ${JSON.stringify(entry.path)} at byte ${entry.offset})` : '';
    throw new ContainerFormatError(`${this.what}: ${msg}${at}`, { ...details, ...(entry ? { path: entry.path } : {}) });
  }

  private async skipCurrent(): Promise<void> {
    while (this.remaining > 0) {
      const b = await this.src.takeSome(Math.min(this.remaining, 1 << 20));
      if (!b) this.fail(`truncated tar stream: ${this.remaining} bytes of entry data missing`, this.current);
      this.remaining -= b.length;
    }
    if (this.pad) {
      if (!(await this.src.take(this.pad))) this.fail('truncated tar stream: padding after entry data missing', this.current);
      this.pad = 0;
    }
  }

  private async readMetaBody(size: number, kind: string): Promise<Buffer> {
    if (size > MAX_META_ENTRY) this.fail(`${kind} entry of ${size} bytes is too large`);
    const body = size ? await this.src.take(size) : Buffer.alloc(0);
    if (!body) this.fail(`truncated tar stream inside a ${kind} entry`);
    const p = (BLOCK - (size % BLOCK)) % BLOCK;
    if (p && !(await this.src.take(p))) this.fail(`truncated tar stream inside a ${kind} entry`);
    return body;
  }

  /** The next entry, or null at the end-of-archive marker. */
  async next(): Promise<TarEntry | null> {
    if (this.ended) return null;
    await this.skipCurrent();
    this.current = null;
    const ext = new EntryExtensions((msg) => this.fail(msg));
    for (;;) {
      const offset = this.src.pos;
      const h = await this.src.take(BLOCK);
      if (!h) {
        if (this.src.pos === offset) this.fail('tar stream ended without the end-of-archive marker (truncated?)');
        this.fail(`truncated tar stream: incomplete header at byte ${offset}`);
      }
      if (h.every((x) => x === 0)) {
        // End of archive: a second zero block should follow; accept EOF instead.
        const h2 = await this.src.take(BLOCK);
        if (h2 && !h2.every((x) => x === 0)) this.fail(`lone zero block at byte ${offset} inside the archive`);
        this.ended = true;
        await this.src.drain();
        return null;
      }
      this.checkChecksum(h, offset);
      const type = String.fromCharCode(h[F.type[0]]! || 0x30);
      let size: number;
      try {
        size = parseNumeric(h.subarray(F.size[0], F.size[0] + F.size[1]));
      } catch (e) {
        this.fail(`bad size field in header at byte ${offset}: ${(e as Error).message}`);
      }
      // Extended headers: one of each at most, resolved as by every reader here (EntryExtensions).
      if (type === 'L' || type === 'K') {
        ext.addLong(type, await this.readMetaBody(size, `GNU long ${type === 'L' ? 'name' : 'link'}`), offset);
        continue;
      }
      if (type === 'x') {
        const body = await this.readMetaBody(size, 'PAX');
        ext.addPax(body, offset);
        continue;
      }
      if (type === 'g') {
        parsePaxRecords(await this.readMetaBody(size, 'PAX global'), (msg) => this.fail(`PAX header at byte ${offset}: ${msg}`));
        continue;
      }
      const pax = new Map<string, Buffer>();
      for (const { key, value } of ext.records) {
        const k = key.toString('utf8');
        // Two keys that differ only in invalid UTF-8 would collide here.
        if (pax.has(k)) this.fail(`PAX record ${JSON.stringify(k)} given twice`);
        pax.set(k, value);
      }
      const magic = h.subarray(F.magic[0], F.magic[0] + 6).toString('latin1');
      let name = cstr(h.subarray(F.name[0], F.name[0] + F.name[1])).toString('utf8');
      if (magic === 'ustar\0') {
        const prefix = cstr(h.subarray(F.prefix[0], F.prefix[0] + F.prefix[1])).toString('utf8');
        if (prefix) name = `${prefix}/${name}`;
      }
      const num = (f: readonly [number, number], field: string): number => {
        try {
          return parseNumeric(h.subarray(f[0], f[0] + f[1]));
        } catch (e) {
          return this.fail(`bad ${field} field in header at byte ${offset}: ${(e as Error).message}`);
        }
      };
      const entry: TarEntry = {
        type,
        path: name,
        linkname: cstr(h.subarray(F.linkname[0], F.linkname[0] + F.linkname[1])).toString('utf8'),
        mode: num(F.mode, 'mode'),
        uid: num(F.uid, 'uid'),
        gid: num(F.gid, 'gid'),
        size,
        mtime: num(F.mtime, 'mtime'),
        pax,
        offset,
      };
      const paxStr = (k: string): string | undefined => pax.get(k)?.toString('utf8');
      const paxNum = (k: string): number | undefined => {
        const v = paxStr(k);
        if (v === undefined) return undefined;
        const n = paxDecimal(v);
        if (n === undefined) this.fail(`bad PAX ${k}=${JSON.stringify(v)}`, entry);
        return n;
      };
      entry.path = ext.path(Buffer.from(entry.path)).toString('utf8');
      entry.linkname = ext.linkpath(Buffer.from(entry.linkname)).toString('utf8');
      entry.size = paxNum('size') ?? entry.size;
      entry.uid = paxNum('uid') ?? entry.uid;
      entry.gid = paxNum('gid') ?? entry.gid;
      if ([...pax.keys()].some((k) => k.startsWith('GNU.sparse'))) this.fail('sparse files are not supported', entry);
      if (type === 'S') this.fail('GNU sparse entries are not supported', entry);
      // Hardlinks, symlinks, devices, directories and FIFOs carry no data. tar-rs still skips as
      // many bytes as their size field says, other readers skip none: with a size there the two
      // would read different entries from the same bytes, so it is refused.
      if ('123456'.includes(type) && entry.size !== 0) {
        this.fail(`entry of type '${type}' has a size of ${entry.size} bytes (readers disagree on whether data follows it)`, entry);
      }
      this.remaining = entry.size;
      this.pad = (BLOCK - (entry.size % BLOCK)) % BLOCK;
      this.current = entry;
      return entry;
    }
  }

  private checkChecksum(h: Buffer, offset: number): void {
    let stored: number;
    try {
      stored = parseNumeric(h.subarray(F.cksum[0], F.cksum[0] + F.cksum[1]));
    } catch {
      this.fail(`corrupt header at byte ${offset}: unreadable checksum field`);
    }
    let unsigned = 8 * 0x20;
    for (let i = 0; i < 148; i++) unsigned += h[i]!;
    for (let i = 156; i < BLOCK; i++) unsigned += h[i]!;
    let signed = unsigned;
    if (stored !== unsigned) {
      // Some old writers summed signed chars.
      signed = 8 * 0x20;
      for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) signed += h[i]! > 127 ? h[i]! - 256 : h[i]!;
    }
    if (stored !== unsigned && stored !== signed) {
      this.fail(`corrupt header at byte ${offset}: checksum ${stored} does not match computed ${unsigned}`);
    }
  }

  /** The current entry's data, in chunks. */
  async *body(chunkSize = 1 << 20): AsyncGenerator<Buffer> {
    const entry = this.current;
    while (this.remaining > 0) {
      const b = await this.src.takeSome(Math.min(this.remaining, chunkSize));
      if (!b) this.fail(`truncated tar stream: ${this.remaining} bytes of entry data missing`, entry);
      this.remaining -= b.length;
      yield b;
    }
    if (this.pad) {
      if (!(await this.src.take(this.pad))) this.fail('truncated tar stream: padding after entry data missing', entry);
      this.pad = 0;
    }
  }

  /** The current entry's data in memory; fails if it is larger than `limit`. */
  async readBody(limit: number): Promise<Buffer> {
    const entry = this.current;
    if (entry && entry.size > limit) this.fail(`entry of ${entry.size} bytes exceeds the limit of ${limit} bytes`, entry);
    const n = this.remaining;
    const b = n ? await this.src.take(n) : Buffer.alloc(0);
    if (!b) this.fail(`truncated tar stream: entry data missing`, entry);
    this.remaining = 0;
    if (this.pad) {
      if (!(await this.src.take(this.pad))) this.fail('truncated tar stream: padding after entry data missing', entry);
      this.pad = 0;
    }
    return b;
  }

  /** The current entry's data as a Readable (for streaming writes). */
  bodyStream(): Readable {
    return Readable.from(this.body(), { objectMode: false });
  }

  /** Stop reading and release the input. */
  async close(): Promise<void> {
    await this.src.close();
  }
}
