/**
 * composefs-rs splitstreams (shared/specs/composefs-format.md §10.9; composefs-rs
 * `doc/splitstream.md`, `crates/composefs/src/splitstream.rs`), current (`repr(C)`) layout:
 *
 * ```
 * 0   header (32)  magic "SplitStream"[11] · version u8 = 0 · flags u16 = 0 · algorithm u8 (1 = SHA-256)
 *                  · lg_blocksize u8 = 12 · info FileRange{start u64, end u64}
 * 32  info (80)    stream_refs, object_refs, stream, named_refs (FileRanges) · content_type u64 · stream_size u64
 * …   stream_refs  flat array of 32-byte digests (streams this one names)
 * …   object_refs  flat array of 32-byte digests (objects holding external chunks), first-use order
 * …   named_refs   zstd( "<index into stream_refs>:<name>\0" … ), sorted by name
 * …   stream       zstd( chunks: i64 LE n; n < 0 → -n inline bytes follow; n ≥ 0 → object_refs[n] )
 * ```
 *
 * All integers little-endian. The file is itself stored as an object (named by its fs-verity
 * digest). The reader also accepts the header bootc ≤ 1.15 wrote (compiler-reordered: info at 0,
 * flags 16, magic 18, version 29, algorithm 30, lg_blocksize 31).
 *
 * Writer: inline bytes are coalesced and flushed as one chunk when an external reference follows,
 * at `done()`, or at a caller-declared `boundary()` once 1 MiB is buffered (chunks must not split a
 * unit a reader reads with one call, e.g. a tar header). The compressed stream goes to a temporary
 * file, so memory stays flat whatever the stream size.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { open, stat, unlink } from 'node:fs/promises';
import { CompressStream, DecompressStream, compress, decompress } from 'zstd-napi';
import { SplitstreamFormatError } from './errors.js';
import type { ByteStream, ObjectStore, StoreResult } from './objects.js';
import type { CfsRepo } from './repository.js';

export const SPLITSTREAM_MAGIC = Buffer.from('SplitStream');
export const SPLITSTREAM_HEADER_SIZE = 32;
export const SPLITSTREAM_INFO_SIZE = 80;
export const FSVERITY_ALG_SHA256 = 1;
export const LG_BLOCKSIZE = 12;
const DIGEST_LEN = 32;
const INLINE_FLUSH = 1 << 20;

/** An 8-character ASCII tag read as a little-endian u64, as composefs-oci defines its content types. */
export const contentTypeOf = (tag: string): bigint => {
  if (tag.length !== 8) throw new RangeError(`content type tag must be 8 characters: ${tag}`);
  return Buffer.from(tag, 'latin1').readBigUInt64LE(0);
};

export const CONTENT_TYPE = {
  OCI_LAYER: contentTypeOf('ocilayer'),
  OCI_CONFIG: contentTypeOf('ociconfg'),
  OCI_MANIFEST: contentTypeOf('ocimanif'),
  OCI_BLOB: contentTypeOf('oci_blob'),
} as const;

/** The content type as its ASCII tag when printable, else as a number. */
export function contentTypeName(t: bigint): string {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(t);
  return /^[\x20-\x7e]{8}$/.test(b.toString('latin1')) ? b.toString('latin1') : t.toString();
}

class UniqueList {
  readonly items: string[] = [];
  private readonly index = new Map<string, number>();
  ensure(hex: string): number {
    let i = this.index.get(hex);
    if (i === undefined) {
      i = this.items.length;
      this.items.push(hex);
      this.index.set(hex, i);
    }
    return i;
  }
  bytes(): Buffer {
    return Buffer.concat(this.items.map((h) => Buffer.from(h, 'hex')));
  }
}

const i64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(n);
  return b;
};

const range = (start: number, end: number): Buffer => {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt(start), 0);
  b.writeBigUInt64LE(BigInt(end), 8);
  return b;
};

export interface SplitstreamResult extends StoreResult {
  objectRefs: string[];
  streamRefs: string[];
  streamSize: bigint;
}

export class SplitstreamWriter {
  private readonly streamRefs = new UniqueList();
  private readonly objectRefs = new UniqueList();
  private readonly named = new Map<string, number>();
  private inline: Buffer[] = [];
  private inlineLen = 0;
  private totalSize = 0n;
  private failed: Error | undefined;
  private finished = false;

  private constructor(
    readonly store: ObjectStore,
    readonly contentType: bigint,
    private readonly tmpPath: string,
    private readonly comp: CompressStream,
    private readonly out: WriteStream,
  ) {
    const fail = (e: Error): void => {
      this.failed ??= e;
    };
    comp.on('error', fail);
    out.on('error', fail);
    comp.pipe(out);
  }

  static async create(store: ObjectStore, contentType: bigint): Promise<SplitstreamWriter> {
    const { path, fh } = await store.repo.tempFile();
    // Write through the handle we created (no reopen by path, so an abort that unlinks the file
    // can never race with a late open recreating it).
    const out = createWriteStream(path, { fd: fh, highWaterMark: 1 << 20 });
    return new SplitstreamWriter(store, contentType, path, new CompressStream({ compressionLevel: 3 }), out);
  }

  private check(): void {
    if (this.failed) throw this.failed;
    if (this.finished) throw new Error('splitstream writer already finished');
  }

  private async push(buf: Buffer): Promise<void> {
    if (!this.comp.write(buf)) {
      await Promise.race([once(this.comp, 'drain'), once(this.comp, 'error'), once(this.out, 'error')]);
    }
    this.check();
  }

  private async flushInline(): Promise<void> {
    if (this.inlineLen === 0) return;
    const data = Buffer.concat(this.inline, this.inlineLen);
    this.inline = [];
    this.inlineLen = 0;
    await this.push(i64(-BigInt(data.length)));
    await this.push(data);
  }

  /** Name another stream (by its object digest); named refs keep it alive for GC. */
  addNamedStreamRef(name: string, hex: string): void {
    this.check();
    if (name.includes('\0')) throw new SplitstreamFormatError(`named ref "${name}" contains NUL`);
    this.named.set(name, this.streamRefs.ensure(hex));
  }

  /** Append inline bytes (buffered; see `boundary`). */
  writeInline(data: Buffer): void {
    this.check();
    if (data.length === 0) return;
    this.inline.push(data);
    this.inlineLen += data.length;
    this.totalSize += BigInt(data.length);
  }

  /** The caller is at a point where an inline chunk may end: flush when enough is buffered. */
  async boundary(): Promise<void> {
    if (this.inlineLen >= INLINE_FLUSH) await this.flushInline();
  }

  /** Reference an object already stored (`size` bytes of the original stream). */
  async writeReference(hex: string, size: number | bigint): Promise<void> {
    this.check();
    await this.flushInline();
    this.totalSize += BigInt(size);
    await this.push(i64(BigInt(this.objectRefs.ensure(hex))));
  }

  /** Store `src` as an object and reference it. */
  async writeExternal(src: ByteStream): Promise<StoreResult> {
    this.check();
    const r = await this.store.storeStream(src);
    await this.writeReference(r.hex, r.size);
    return r;
  }

  async writeExternalBuffer(buf: Buffer): Promise<StoreResult> {
    this.check();
    const r = await this.store.storeBuffer(buf);
    await this.writeReference(r.hex, r.size);
    return r;
  }

  /** Drop the temporary stream file (after an error). */
  async abort(): Promise<void> {
    this.finished = true;
    this.comp.unpipe(this.out);
    this.comp.destroy();
    if (!this.out.closed) {
      const closed = once(this.out, 'close').catch(() => {});
      this.out.destroy();
      await closed;
    }
    await unlink(this.tmpPath).catch(() => {});
  }

  /** Finish the stream and store the splitstream file as an object; returns its digest. */
  async done(): Promise<SplitstreamResult> {
    this.check();
    try {
      await this.flushInline();
      this.finished = true;
      this.comp.end();
      await Promise.race([
        once(this.out, 'finish'),
        once(this.comp, 'error').then(([e]) => Promise.reject(e as Error)),
        once(this.out, 'error').then(([e]) => Promise.reject(e as Error)),
      ]);
      if (this.failed) throw this.failed;
      const streamLen = (await stat(this.tmpPath)).size;

      const names = [...this.named.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const namedRaw = Buffer.concat(names.map((n) => Buffer.from(`${this.named.get(n)!}:${n}\0`)));
      const namedBytes = compress(namedRaw, { compressionLevel: 3 });
      const streamRefs = this.streamRefs.bytes();
      const objectRefs = this.objectRefs.bytes();

      const infoStart = SPLITSTREAM_HEADER_SIZE;
      const infoEnd = infoStart + SPLITSTREAM_INFO_SIZE;
      const srEnd = infoEnd + streamRefs.length;
      const orEnd = srEnd + objectRefs.length;
      const nrEnd = orEnd + namedBytes.length;
      const stEnd = nrEnd + streamLen;

      const header = Buffer.alloc(SPLITSTREAM_HEADER_SIZE);
      SPLITSTREAM_MAGIC.copy(header, 0);
      header[11] = 0; // version
      header.writeUInt16LE(0, 12); // flags
      header[14] = FSVERITY_ALG_SHA256;
      header[15] = LG_BLOCKSIZE;
      range(infoStart, infoEnd).copy(header, 16);
      const ct = Buffer.alloc(8);
      ct.writeBigUInt64LE(this.contentType);
      const ss = Buffer.alloc(8);
      ss.writeBigUInt64LE(this.totalSize);
      const info = Buffer.concat([range(infoEnd, srEnd), range(srEnd, orEnd), range(nrEnd, stEnd), range(orEnd, nrEnd), ct, ss]);

      const tmpPath = this.tmpPath;
      async function* file(): AsyncGenerator<Buffer> {
        yield header;
        yield info;
        if (streamRefs.length) yield streamRefs;
        if (objectRefs.length) yield objectRefs;
        yield namedBytes;
        for await (const c of createReadStream(tmpPath, { highWaterMark: 1 << 20 })) yield c as Buffer;
      }
      const r = await this.store.storeStream(file());
      return { ...r, objectRefs: [...this.objectRefs.items], streamRefs: [...this.streamRefs.items], streamSize: this.totalSize };
    } finally {
      this.finished = true;
      await unlink(this.tmpPath).catch(() => {});
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reader

export interface SplitstreamInfo {
  path: string;
  size: number;
  /** The header was in bootc ≤ 1.15's reordered layout. */
  oldLayout: boolean;
  contentType: bigint;
  /** Size of the reassembled stream. */
  streamSize: bigint;
  streamRefs: string[];
  objectRefs: string[];
  /** name → object digest of the named stream. */
  namedRefs: Map<string, string>;
  /** Byte range of the compressed chunk stream. */
  stream: { start: number; end: number };
}

function readRange(b: Buffer, off: number, size: number, what: string, path: string): { start: number; end: number } {
  const start = b.readBigUInt64LE(off);
  const end = b.readBigUInt64LE(off + 8);
  if (end < start || end > BigInt(size)) {
    throw new SplitstreamFormatError(`splitstream ${path}: ${what} range ${start}..${end} is outside the file (${size} bytes)`, { path, field: what });
  }
  return { start: Number(start), end: Number(end) };
}

async function readAt(path: string, r: { start: number; end: number }): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(r.end - r.start);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await fh.read(buf, off, buf.length - off, r.start + off);
      if (bytesRead === 0) throw new SplitstreamFormatError(`splitstream ${path}: short read at ${r.start + off}`);
      off += bytesRead;
    }
    return buf;
  } finally {
    await fh.close();
  }
}

function digests(b: Buffer, what: string, path: string): string[] {
  if (b.length % DIGEST_LEN !== 0) throw new SplitstreamFormatError(`splitstream ${path}: ${what} section is ${b.length} bytes, not a multiple of 32`, { path, field: what });
  const out: string[] = [];
  for (let o = 0; o < b.length; o += DIGEST_LEN) out.push(b.subarray(o, o + DIGEST_LEN).toString('hex'));
  return out;
}

/** Parse a splitstream's header, info, reference arrays and named refs (not the chunk stream). */
export async function readSplitstream(path: string): Promise<SplitstreamInfo> {
  const size = (await stat(path)).size;
  if (size < SPLITSTREAM_HEADER_SIZE) throw new SplitstreamFormatError(`splitstream ${path}: ${size} bytes is shorter than the 32-byte header`, { path });
  const h = await readAt(path, { start: 0, end: SPLITSTREAM_HEADER_SIZE });
  let oldLayout = false;
  let version: number, algorithm: number, lg: number, info: { start: number; end: number };
  if (h.subarray(0, 11).equals(SPLITSTREAM_MAGIC)) {
    version = h[11]!;
    algorithm = h[14]!;
    lg = h[15]!;
    info = readRange(h, 16, size, 'info', path);
  } else if (h.subarray(18, 29).equals(SPLITSTREAM_MAGIC)) {
    oldLayout = true;
    info = readRange(h, 0, size, 'info', path);
    version = h[29]!;
    algorithm = h[30]!;
    lg = h[31]!;
  } else {
    throw new SplitstreamFormatError(`splitstream ${path}: bad magic (not a splitstream)`, { path, field: 'magic' });
  }
  if (version !== 0) throw new SplitstreamFormatError(`splitstream ${path}: unsupported version ${version}`, { path, field: 'version' });
  if (algorithm !== FSVERITY_ALG_SHA256) throw new SplitstreamFormatError(`splitstream ${path}: fs-verity algorithm ${algorithm} is not SHA-256 (1)`, { path, field: 'algorithm' });
  if (lg !== LG_BLOCKSIZE) throw new SplitstreamFormatError(`splitstream ${path}: lg_blocksize ${lg} is not 12`, { path, field: 'lg_blocksize' });
  if (info.end - info.start < SPLITSTREAM_INFO_SIZE) throw new SplitstreamFormatError(`splitstream ${path}: info section is ${info.end - info.start} bytes, expected ≥ 80`, { path, field: 'info' });
  const ib = await readAt(path, { start: info.start, end: info.start + SPLITSTREAM_INFO_SIZE });
  const sr = readRange(ib, 0, size, 'stream_refs', path);
  const or = readRange(ib, 16, size, 'object_refs', path);
  const st = readRange(ib, 32, size, 'stream', path);
  const nr = readRange(ib, 48, size, 'named_refs', path);
  const contentType = ib.readBigUInt64LE(64);
  const streamSize = ib.readBigUInt64LE(72);
  const streamRefs = digests(await readAt(path, sr), 'stream_refs', path);
  const objectRefs = digests(await readAt(path, or), 'object_refs', path);
  const namedRefs = new Map<string, string>();
  const nb = await readAt(path, nr);
  if (nb.length) {
    let raw: Buffer;
    try {
      raw = decompress(nb);
    } catch (e) {
      throw new SplitstreamFormatError(`splitstream ${path}: named_refs section is not valid zstd (${(e as Error).message})`, { path, field: 'named_refs' });
    }
    let p = 0;
    while (p < raw.length) {
      const z = raw.indexOf(0, p);
      if (z < 0) throw new SplitstreamFormatError(`splitstream ${path}: trailing junk in named_refs`, { path, field: 'named_refs' });
      const rec = raw.subarray(p, z).toString('utf8');
      p = z + 1;
      const colon = rec.indexOf(':');
      const idx = colon > 0 ? Number(rec.slice(0, colon)) : NaN;
      if (!Number.isInteger(idx) || idx < 0 || !/^\d+$/.test(rec.slice(0, colon))) {
        throw new SplitstreamFormatError(`splitstream ${path}: bad named ref record "${rec}"`, { path, field: 'named_refs' });
      }
      const hex = streamRefs[idx];
      if (hex === undefined) throw new SplitstreamFormatError(`splitstream ${path}: named ref "${rec}" index out of range`, { path, field: 'named_refs' });
      namedRefs.set(rec.slice(colon + 1), hex);
    }
  }
  return { path, size, oldLayout, contentType, streamSize, streamRefs, objectRefs, namedRefs, stream: st };
}

export type SplitstreamChunk = { type: 'inline'; data: Buffer } | { type: 'external'; hex: string };

/**
 * The chunks of a splitstream in order. Inline chunks may be yielded in several pieces (never
 * merged across chunks); external ones name the object.
 */
export async function* splitstreamChunks(info: SplitstreamInfo): AsyncGenerator<SplitstreamChunk> {
  if (info.stream.end === info.stream.start) return;
  const src = createReadStream(info.path, { start: info.stream.start, end: info.stream.end - 1, highWaterMark: 1 << 20 });
  const dec = new DecompressStream();
  src.on('error', (e) => dec.destroy(e));
  src.pipe(dec);
  let pending = Buffer.alloc(0);
  let inlineLeft = 0;
  try {
    for await (const c of dec as AsyncIterable<Buffer>) {
      let buf = pending.length ? Buffer.concat([pending, c]) : c;
      pending = Buffer.alloc(0);
      while (buf.length) {
        if (inlineLeft > 0) {
          const n = Math.min(inlineLeft, buf.length);
          yield { type: 'inline', data: buf.subarray(0, n) };
          inlineLeft -= n;
          buf = buf.subarray(n);
          continue;
        }
        if (buf.length < 8) {
          pending = Buffer.from(buf);
          break;
        }
        const v = buf.readBigInt64LE(0);
        buf = buf.subarray(8);
        if (v < 0n) {
          if (-v > BigInt(Number.MAX_SAFE_INTEGER)) throw new SplitstreamFormatError(`splitstream ${info.path}: implausible inline chunk of ${-v} bytes`);
          inlineLeft = Number(-v);
        } else {
          const hex = info.objectRefs[Number(v)];
          if (v >= BigInt(info.objectRefs.length) || hex === undefined) {
            throw new SplitstreamFormatError(`splitstream ${info.path}: external reference ${v} is out of range (${info.objectRefs.length} objects)`, { path: info.path, field: 'stream' });
          }
          yield { type: 'external', hex };
        }
      }
    }
  } catch (e) {
    if (e instanceof SplitstreamFormatError) throw e;
    throw new SplitstreamFormatError(`splitstream ${info.path}: stream section: ${(e as Error).message}`, { path: info.path, field: 'stream' });
  } finally {
    src.destroy();
    dec.destroy();
  }
  if (inlineLeft > 0 || pending.length > 0) {
    throw new SplitstreamFormatError(`splitstream ${info.path}: stream ends inside a chunk`, { path: info.path, field: 'stream' });
  }
}

/** The reassembled stream: inline bytes and the content of referenced objects, in order. */
export async function* catSplitstream(repo: CfsRepo, info: SplitstreamInfo): AsyncGenerator<Buffer> {
  for await (const c of splitstreamChunks(info)) {
    if (c.type === 'inline') yield c.data;
    else for await (const b of createReadStream(repo.objectPath(c.hex), { highWaterMark: 1 << 20 })) yield b as Buffer;
  }
}
