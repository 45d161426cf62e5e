/**
 * A push-style, byte-exact tar parser for OCI layers (composefs sources).
 *
 * Unlike a general tar reader it keeps everything as raw bytes — entry names, link targets and
 * PAX values (`SCHILY.xattr.*` values are binary, names need not be UTF-8) — and hands each
 * entry's data to a sink chunk by chunk, so file contents stream past (hashed on the way by the
 * caller) and are never held in memory.
 *
 * Understood: ustar (with `prefix`), GNU (`L`/`K` long names and links, base-256 numbers, also
 * negative mtimes), PAX `x` records (`path`, `linkpath`, `size`, `uid`, `gid`, `mtime` with an
 * optional fraction, `SCHILY.xattr.*`, `SCHILY.devmajor`/`devminor`; `g` records are read and
 * ignored), old headers (type flag NUL and a name ending in `/`: a directory). Extended headers
 * resolve as in the other readers (EntryExtensions: a long name wins over PAX `path`; a second
 * one, or a PAX key given twice, is refused). Every header checksum is checked;
 * input that ends inside a header or an entry, or without the end-of-archive marker, is an error
 * naming the layer and the entry. Sparse files and other exotic types are refused by name.
 */
import { cstr, F } from '../../container/tar-header.js'; // header field offsets, shared reader parts
import { EntryExtensions, paxDecimal, parsePaxRecords } from '../../oci/tar-pax.js';
import { ComposefsSourceError } from './errors.js';

export const TAR_BLOCK = 512;
const MAX_META_ENTRY = 1 << 20; // L/K/x/g bodies above 1 MiB are refused

/** Entry kinds after type-flag decoding. */
export type TarKind = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface RawTarEntry {
  kind: TarKind;
  /** Type flag character as found in the header. */
  typeflag: string;
  /** Entry name after GNU/PAX resolution, raw bytes, not normalized. */
  path: Buffer;
  /** Link target (hardlinks, symlinks), raw bytes. */
  linkpath: Buffer;
  /** Permission bits (`mode & 07777`). */
  mode: number;
  uid: number;
  gid: number;
  /** Data bytes that follow in the stream (0 for everything but regular files). */
  size: number;
  /** Modification time, whole seconds (PAX fractions are floored). */
  mtimeSec: bigint;
  devmajor: number;
  devminor: number;
  /** `SCHILY.xattr.NAME` records in stream order (name = raw bytes after the prefix). */
  xattrs: { key: Buffer; value: Buffer }[];
  /** Byte offset of the entry's first header (including its L/K/x headers) in the tar. */
  offset: number;
}

/** Receives a regular file's data. */
export interface EntrySink {
  data(chunk: Buffer): void;
  end(): void;
}


const XATTR_PREFIX = Buffer.from('SCHILY.xattr.');

/** Numeric header field: octal (space/NUL padded) or GNU base-256 (two's complement). */
function parseNumber(f: Buffer): bigint | undefined {
  if (f.length === 0) return 0n;
  if (f[0]! & 0x80) {
    let v = BigInt(f[0]! & 0x7f);
    const negative = (f[0]! & 0x40) !== 0;
    for (let i = 1; i < f.length; i++) v = (v << 8n) | BigInt(f[i]!);
    if (negative) v -= 1n << BigInt(f.length * 8 - 1);
    return v;
  }
  let i = 0;
  while (i < f.length && (f[i] === 0x20 || f[i] === 0)) i++;
  let v = 0n;
  let digits = 0;
  for (; i < f.length; i++) {
    const c = f[i]!;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) return undefined;
    v = v * 8n + BigInt(c - 0x30);
    digits++;
  }
  for (; i < f.length; i++) if (f[i] !== 0x20 && f[i] !== 0) return undefined;
  return digits === 0 ? 0n : v;
}

/** PAX `mtime`: decimal seconds with an optional fraction, possibly negative → floor. */
function parsePaxTime(v: string): bigint | undefined {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(v);
  if (!m) return undefined;
  let s = BigInt(m[2]!);
  const frac = m[3] !== undefined && /[1-9]/.test(m[3]);
  if (m[1] === '-') s = frac ? -s - 1n : -s;
  return s;
}

const enum State {
  Header,
  Meta,
  Body,
  Pad,
  End,
}

/**
 * Feed the tar with `push(chunk)` and finish with `end()`. `onEntry` is called for every entry;
 * for regular files with data it may return a sink that receives the data.
 */
export class LayerTarParser {
  private state = State.Header;
  private carry: Buffer = Buffer.alloc(0);
  private pos = 0; // bytes consumed from the stream
  private entryStart = -1;
  private meta: { type: string; size: number; parts: Buffer[]; got: number; offset: number } | undefined;
  private remaining = 0;
  private pad = 0;
  private sink: EntrySink | undefined;
  private current: RawTarEntry | undefined;
  private ext = this.newExtensions();
  private zeroBlocks = 0;
  private endOffset = -1;

  constructor(
    /** Names the stream in errors, e.g. `layer 1 (sha256:…) of oci:/x`. */
    readonly what: string,
    private readonly onEntry: (e: RawTarEntry) => EntrySink | undefined,
  ) {}

  private newExtensions(): EntryExtensions {
    return new EntryExtensions((msg) => this.fail(msg));
  }

  private fail(msg: string, details: Record<string, unknown> = {}): never {
    const e = this.current;
    const at = e ? ` (entry ${JSON.stringify(e.path.toString('utf8'))} at byte ${e.offset})` : '';
    throw new ComposefsSourceError(`${this.what}: ${msg}${at}`, {
      source: this.what,
      ...(e ? { path: e.path.toString('utf8'), offset: e.offset } : {}),
      ...details,
    });
  }

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      switch (this.state) {
        case State.End:
          this.pos += chunk.length - off; // trailing record padding / garbage after the marker
          return;
        case State.Body: {
          const n = Math.min(this.remaining, chunk.length - off);
          if (n > 0) {
            this.sink?.data(chunk.subarray(off, off + n));
            this.remaining -= n;
            off += n;
            this.pos += n;
          }
          if (this.remaining === 0) this.finishBody();
          break;
        }
        case State.Pad: {
          const n = Math.min(this.pad, chunk.length - off);
          this.pad -= n;
          off += n;
          this.pos += n;
          if (this.pad === 0) this.state = State.Header;
          break;
        }
        case State.Meta: {
          const m = this.meta!;
          const want = m.size + ((TAR_BLOCK - (m.size % TAR_BLOCK)) % TAR_BLOCK) - m.got;
          const n = Math.min(want, chunk.length - off);
          const keep = Math.max(0, Math.min(n, m.size - m.got));
          if (keep > 0) m.parts.push(Buffer.from(chunk.subarray(off, off + keep)));
          m.got += n;
          off += n;
          this.pos += n;
          if (n === want) this.finishMeta();
          break;
        }
        case State.Header: {
          const need = TAR_BLOCK - this.carry.length;
          if (this.carry.length === 0 && chunk.length - off >= TAR_BLOCK) {
            const h = chunk.subarray(off, off + TAR_BLOCK);
            off += TAR_BLOCK;
            this.pos += TAR_BLOCK;
            this.header(h);
          } else {
            const n = Math.min(need, chunk.length - off);
            this.carry = Buffer.concat([this.carry, chunk.subarray(off, off + n)]);
            off += n;
            this.pos += n;
            if (this.carry.length === TAR_BLOCK) {
              const h = this.carry;
              this.carry = Buffer.alloc(0);
              this.header(h);
            }
          }
          break;
        }
      }
    }
    // A zero-length body right after its header finishes without more input.
    if (this.state === State.Body && this.remaining === 0) this.finishBody();
  }

  /** End of input: the archive must have ended with its end-of-archive marker. */
  end(): void {
    if (this.state === State.End) return;
    if (this.state === State.Header && this.carry.length === 0 && this.zeroBlocks === 1) {
      this.state = State.End; // one zero block then EOF: accepted (as GNU tar does)
      return;
    }
    if (this.state === State.Body) this.fail(`truncated tar stream: ${this.remaining} bytes of entry data missing`);
    if (this.state === State.Meta || this.state === State.Pad) this.fail('truncated tar stream inside an entry');
    if (this.carry.length > 0) this.fail(`truncated tar stream: incomplete header at byte ${this.pos - this.carry.length}`);
    this.fail('tar stream ended without the end-of-archive marker (truncated?)');
  }

  /** Offset of the end-of-archive marker (after end()). */
  get endOfArchive(): number {
    return this.endOffset;
  }

  private header(h: Buffer): void {
    const offset = this.pos - TAR_BLOCK;
    this.current = undefined;
    if (h.every((x) => x === 0)) {
      if (this.entryStart >= 0) this.fail(`zero block at byte ${offset} inside an entry's headers`);
      this.zeroBlocks++;
      if (this.zeroBlocks === 2) {
        this.state = State.End;
        this.endOffset = offset - TAR_BLOCK;
      }
      return;
    }
    if (this.zeroBlocks > 0) this.fail(`lone zero block at byte ${offset - TAR_BLOCK} inside the archive`);
    if (this.entryStart < 0) this.entryStart = offset;
    this.checkChecksum(h, offset);
    const typeByte = h[F.type[0]]!;
    const type = typeByte === 0 ? '\0' : String.fromCharCode(typeByte);
    const size = this.num(h, F.size, 'size', offset);
    if (size < 0n || size > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`bad size ${size} in header at byte ${offset}`);
    if (type === 'L' || type === 'K' || type === 'x' || type === 'g') {
      if (size > BigInt(MAX_META_ENTRY)) this.fail(`${type} entry of ${size} bytes at byte ${offset} is too large`);
      this.meta = { type, size: Number(size), parts: [], got: 0, offset };
      this.state = State.Meta;
      if (size === 0n) this.finishMeta();
      return;
    }
    this.entry(h, type, Number(size), offset);
  }

  private finishMeta(): void {
    const m = this.meta!;
    this.meta = undefined;
    this.state = State.Header;
    const body = Buffer.concat(m.parts);
    if (m.type === 'L' || m.type === 'K') this.ext.addLong(m.type, body, m.offset);
    else if (m.type === 'x') this.ext.addPax(body, m.offset);
    else parsePaxRecords(body, (msg) => this.fail(`PAX header at byte ${m.offset}: ${msg}`)); // 'g': checked, not used
  }

  private num(h: Buffer, f: readonly [number, number], field: string, offset: number): bigint {
    const v = parseNumber(h.subarray(f[0], f[0] + f[1]));
    if (v === undefined) this.fail(`bad ${field} field in header at byte ${offset}`);
    return v;
  }

  private checkChecksum(h: Buffer, offset: number): void {
    const stored = parseNumber(h.subarray(F.cksum[0], F.cksum[0] + F.cksum[1]));
    let unsigned = 0;
    let signed = 0;
    for (let i = 0; i < TAR_BLOCK; i++) {
      const b = i >= F.cksum[0] && i < F.cksum[0] + F.cksum[1] ? 0x20 : h[i]!;
      unsigned += b;
      signed += b > 127 ? b - 256 : b;
    }
    if (stored === undefined || (Number(stored) !== unsigned && Number(stored) !== signed)) {
      this.fail(`corrupt tar header at byte ${offset}: checksum ${stored ?? '(unreadable)'} does not match ${unsigned}`);
    }
  }

  private entry(h: Buffer, type: string, size: number, offset: number): void {
    const magic = h.subarray(F.magic[0], F.magic[0] + 6).toString('latin1');
    let name = Buffer.from(cstr(h.subarray(F.name[0], F.name[0] + F.name[1])));
    if (magic === 'ustar\0') {
      const prefix = cstr(h.subarray(F.prefix[0], F.prefix[0] + F.prefix[1]));
      if (prefix.length) name = Buffer.concat([prefix, Buffer.from('/'), name]);
    }
    const field = (f: readonly [number, number], what: string): bigint => this.num(h, f, what, offset);
    const e: RawTarEntry = {
      kind: 'file',
      typeflag: type,
      path: this.ext.path(name),
      linkpath: this.ext.linkpath(Buffer.from(cstr(h.subarray(F.linkname[0], F.linkname[0] + F.linkname[1])))),
      mode: Number(field(F.mode, 'mode') & 0o7777n),
      uid: Number(field(F.uid, 'uid')),
      gid: Number(field(F.gid, 'gid')),
      size,
      mtimeSec: field(F.mtime, 'mtime'),
      devmajor: 0,
      devminor: 0,
      xattrs: [],
      offset: this.entryStart,
    };
    const isDev = type === '3' || type === '4';
    if (isDev) {
      e.devmajor = Number(field(F.devmajor, 'devmajor'));
      e.devminor = Number(field(F.devminor, 'devminor'));
    }
    this.current = e;
    for (const { key, value } of this.ext.records) {
      if (key.length > XATTR_PREFIX.length && key.subarray(0, XATTR_PREFIX.length).equals(XATTR_PREFIX)) {
        e.xattrs.push({ key: Buffer.from(key.subarray(XATTR_PREFIX.length)), value });
        continue;
      }
      const k = key.toString('latin1');
      const text = (): string => value.toString('latin1');
      const int = (what: string): number => {
        const n = paxDecimal(text());
        if (n === undefined) this.fail(`bad PAX ${what}=${JSON.stringify(text())}`);
        return n;
      };
      switch (k) {
        case 'path':
        case 'linkpath':
          break; // resolved above (a GNU long name/link wins)
        case 'size':
          e.size = int('size');
          break;
        case 'uid':
          e.uid = int('uid');
          break;
        case 'gid':
          e.gid = int('gid');
          break;
        case 'mtime': {
          const t = parsePaxTime(text());
          if (t === undefined) this.fail(`bad PAX mtime=${JSON.stringify(text())}`);
          e.mtimeSec = t;
          break;
        }
        case 'SCHILY.devmajor':
          if (isDev) e.devmajor = int('SCHILY.devmajor');
          break;
        case 'SCHILY.devminor':
          if (isDev) e.devminor = int('SCHILY.devminor');
          break;
        default:
          if (k.startsWith('GNU.sparse')) this.fail('sparse files are not supported');
      }
    }
    this.ext = this.newExtensions();
    this.entryStart = -1;
    this.checkRanges(e);

    switch (type) {
      case '0':
      case '7':
        e.kind = 'file';
        break;
      case '\0':
        // Old (pre-POSIX) archives mark directories with a trailing slash; Go's archive/tar (what
        // container runtimes extract with) reads it so for this type flag only, not for '0'.
        e.kind = e.path.length > 0 && e.path[e.path.length - 1] === 0x2f ? 'dir' : 'file';
        break;
      case '1':
        e.kind = 'hardlink';
        break;
      case '2':
        e.kind = 'symlink';
        break;
      case '3':
        e.kind = 'char';
        break;
      case '4':
        e.kind = 'block';
        break;
      case '5':
        e.kind = 'dir';
        break;
      case '6':
        e.kind = 'fifo';
        break;
      case 'S':
        this.fail('GNU sparse entries are not supported');
      // eslint-disable-next-line no-fallthrough
      default:
        this.fail(`unsupported tar entry type ${JSON.stringify(type)}`);
    }
    // Only regular files carry data; other types' size fields are ignored (some writers store the
    // link target's size there). A v7 directory's body would be skipped as data.
    const dataSize = e.kind === 'file' ? e.size : e.kind === 'dir' && type === '\0' ? e.size : 0;
    if (e.kind !== 'file') e.size = 0;
    const sink = this.onEntry(e);
    this.sink = e.kind === 'file' ? sink : undefined;
    this.remaining = dataSize;
    this.pad = (TAR_BLOCK - (dataSize % TAR_BLOCK)) % TAR_BLOCK;
    this.state = State.Body;
  }

  /**
   * Values an image cannot hold are refused rather than wrapped: composefs (EROFS) stores uid and
   * gid in 32 bits, mtime in 64, and a device number as the kernel's 32-bit dev_t (12-bit major,
   * 20-bit minor); Go's archive/tar refuses times beyond 64 bits too.
   */
  private checkRanges(e: RawTarEntry): void {
    for (const [what, v] of [['uid', e.uid], ['gid', e.gid]] as const) {
      if (!(v >= 0 && v <= 0xffffffff)) this.fail(`${what} ${v} does not fit in 32 bits`);
    }
    if (e.mtimeSec < -(1n << 63n) || e.mtimeSec >= 1n << 63n) this.fail(`mtime ${e.mtimeSec} does not fit in 64 bits`);
    if (!(e.devmajor >= 0 && e.devmajor <= 0xfff && e.devminor >= 0 && e.devminor <= 0xfffff)) {
      this.fail(`device ${e.devmajor}:${e.devminor} cannot be stored (a Linux dev_t holds majors up to 4095 and minors up to 1048575)`);
    }
  }

  private finishBody(): void {
    this.sink?.end();
    this.sink = undefined;
    this.state = this.pad > 0 ? State.Pad : State.Header;
  }
}

/** Parse a whole tar stream (any async iterable of chunks), calling `onEntry` per entry. */
export async function parseLayerTar(
  input: AsyncIterable<Buffer | Uint8Array | string>,
  what: string,
  onEntry: (e: RawTarEntry) => EntrySink | undefined,
): Promise<void> {
  const p = new LayerTarParser(what, onEntry);
  for await (const c of input) {
    if (typeof c === 'string') throw new ComposefsSourceError(`${what}: tar stream yielded a string (read it without an encoding)`);
    p.push(Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  }
  p.end();
}
