/**
 * composefs-dump(5) reader with exactly mkcomposefs 1.0.8's (`--from-file`) accept/reject
 * verdicts and in-memory semantics (spec: composefs-format.md §2).
 *
 * Streaming: feed chunks with `push()`, finish with `end()`; lines are parsed in place inside the
 * chunks (no per-line copies), so memory is the tree plus one chunk.
 */
import type { Readable } from 'node:stream';
import { TreeNode, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, isValidType, type Xattr } from '../../tree/model.js';
import { DumpfileSyntaxError, type DumpfileField } from '../errors.js';
import {
  LCFS_INLINE_CONTENT_MAX,
  LCFS_INODE_EXTERNAL_XATTR_MAX,
  LCFS_MAX_NAME_LENGTH,
  LCFS_XATTR_ENTRY_OVERHEAD,
  LCFS_XATTR_HEADER_SIZE,
  PATH_MAX,
  XATTR_NAME_MAX,
} from '../erofs/format.js';

export interface ParseDumpfileOptions {
  /**
   * Strict mode (mkcomposefs with `CFS_PARSE_STRICT` set): requires a trailing newline, zero RDEV
   * on non-devices, symlink SIZE equal to the target length and no symlink CONTENT.
   * Default: whether the environment variable CFS_PARSE_STRICT is set.
   */
  strict?: boolean;
  /**
   * Require DIGEST to be exactly 64 hex characters. mkcomposefs does not check (it decodes leading
   * hex pairs and leaves the rest of the 32 bytes undefined; we zero-fill), so the default is false.
   */
  requireValidDigest?: boolean;
  /** Name of the input for error messages. */
  source?: string;
}

const enum F {
  PATH,
  SIZE,
  MODE,
  NLINK,
  UID,
  GID,
  RDEV,
  MTIME,
  PAYLOAD,
  CONTENT,
  DIGEST,
  COUNT,
}

const SP = 0x20;
const NL = 0x0a;
const BS = 0x5c;
const SLASH = 0x2f;
/** mkcomposefs' initial read buffer (doubles when a line does not fit). */
const C_INITIAL_BUFFER = 64 * 1024;

const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[0x61 + i] = 10 + i;
  HEX[0x41 + i] = 10 + i;
}

/** isspace() in the C locale: space, \t \n \v \f \r. */
const isCSpace = (c: number): boolean => c === SP || (c >= 0x09 && c <= 0x0d);

interface Fixup {
  node: TreeNode;
  target: Buffer | undefined;
  line: number;
}

const U64_MAX = (1n << 64n) - 1n;
const EMPTY = Buffer.alloc(0);

/** Thrown internally with the field; converted to DumpfileSyntaxError with line number. */
class LineError {
  constructor(
    readonly reason: string,
    readonly field: DumpfileField,
  ) {}
}

const show = (b: Buffer): string => b.toString('utf8');

/** A private copy of `v` if it is a view into the input buffer `b`. */
const retain = (v: Buffer, b: Buffer): Buffer => (v.buffer === b.buffer ? Buffer.from(v) : v);

export class DumpfileParser {
  readonly strict: boolean;
  readonly requireValidDigest: boolean;
  readonly source: string | undefined;

  private root: TreeNode | undefined;
  private readonly fixups: Fixup[] = [];
  private lineNo = 0;
  /** Pieces of a line that started in an earlier chunk. */
  private pending: Buffer[] = [];
  private pendingLen = 0;
  /** Bytes consumed so far (stream offset of the current chunk start). */
  private offset = 0;
  /** Stream offset of the last newline seen (-1: none). */
  private lastNl = -1;
  // Simulation of mkcomposefs' fread() windows, needed only for one strict-mode quirk: a final
  // unterminated line is accepted if the input ends exactly at a read-window boundary.
  private simEnd = C_INITIAL_BUFFER;
  private simCap = C_INITIAL_BUFFER;

  // Scratch buffer for unescaping.
  private scratch = Buffer.allocUnsafe(4096);
  // Fast path for the parent lookup: the raw path prefix of the previous line and its node.
  private lastPrefix: Buffer = Buffer.alloc(0);
  private lastParent: TreeNode | undefined;
  // Interning of xattr keys and short values by their raw bytes (dumps repeat them).
  private readonly internRawKeys: (Buffer | undefined)[] = new Array(INTERN_SLOTS);
  private readonly internVals: (Buffer | undefined)[] = new Array(INTERN_SLOTS);
  private readonly internIsKey = new Uint8Array(INTERN_SLOTS);
  private readonly pairs = new Map<Buffer, Xattr>();
  private readonly xlist: Xattr[] = [];
  private lastSecIn: number | bigint = 0;
  private lastSecOut = 0n;
  private ended = false;
  // Cached positions of the next NUL / backslash in the current buffer (keeps scans linear).
  private nulBuf: Buffer | undefined;
  private nulFrom = 0;
  private nulPos = -1;
  private bsBuf: Buffer | undefined;
  private bsFrom = 0;
  private bsPos = -1;

  constructor(opts: ParseDumpfileOptions = {}) {
    this.strict = opts.strict ?? process.env['CFS_PARSE_STRICT'] !== undefined;
    this.requireValidDigest = opts.requireValidDigest ?? false;
    this.source = opts.source;
  }

  /** Feed the next chunk of input. */
  push(chunk: Buffer): void {
    if (this.ended) throw new Error('DumpfileParser: push() after end()');
    let start = 0;
    const base = this.offset;
    for (;;) {
      const nl = chunk.indexOf(NL, start);
      if (nl < 0) break;
      this.advanceSim(base + nl);
      this.lastNl = base + nl;
      if (this.pendingLen > 0) {
        this.pending.push(chunk.subarray(start, nl));
        const line = Buffer.concat(this.pending, this.pendingLen + nl - start);
        this.pending = [];
        this.pendingLen = 0;
        this.line(line, 0, line.length);
      } else {
        this.line(chunk, start, nl);
      }
      start = nl + 1;
    }
    if (start < chunk.length) {
      // Keep a private copy: the caller may reuse its chunk buffer.
      this.pending.push(Buffer.from(chunk.subarray(start)));
      this.pendingLen += chunk.length - start;
    }
    this.offset += chunk.length;
  }

  /** Finish: handle a final unterminated line, resolve hardlinks, return the root. */
  end(): TreeNode {
    if (this.ended) throw new Error('DumpfileParser: end() called twice');
    this.ended = true;
    const total = this.offset;
    if (this.pendingLen > 0) {
      const line = Buffer.concat(this.pending, this.pendingLen);
      this.pending = [];
      this.pendingLen = 0;
      // Advance the read-window simulation up to the end of input.
      while (this.simEnd < total) this.stepSim();
      const shortRead = this.simEnd === total;
      if (!this.strict || shortRead) this.line(line, 0, line.length);
      else throw new DumpfileSyntaxError('Missing trailing newline', this.lineNo + 1, 'LINE', this.source);
    }
    if (!this.root) throw new DumpfileSyntaxError('No files in dump file', 0, 'FILE', this.source);
    this.resolveHardlinks();
    return this.root;
  }

  // -- C read-window simulation ---------------------------------------------------------------

  private stepSim(): void {
    // The window [.., simEnd) was read completely; the carried partial line is everything after
    // the last newline before simEnd.
    const carry = this.simEnd - (this.lastNl + 1);
    if (this.simCap < carry + 1) this.simCap = Math.max(this.simCap * 2, carry + 1);
    this.simEnd += this.simCap - carry;
  }

  private advanceSim(nlPos: number): void {
    while (this.simEnd <= nlPos) this.stepSim();
  }

  // -- one line ----------------------------------------------------------------------------------

  private line(b: Buffer, ls: number, le: number): void {
    this.lineNo++;
    try {
      this.parseLine(b, ls, le);
    } catch (e) {
      if (e instanceof LineError) throw new DumpfileSyntaxError(e.reason, this.lineNo, e.field, this.source);
      throw e;
    }
  }

  private parseLine(b: Buffer, ls: number, le: number): void {
    const nul = this.findNul(b, ls);
    if (nul >= 0 && nul < le) {
      throw new LineError(`Invalid embedded NUL character at position ${nul - ls}`, 'LINE');
    }

    // Split the 11 fixed fields (split_at semantics: a missing separator takes the rest of the
    // line and leaves all following fields empty). Plain loops: fields are short.
    const fs = FIELD_STARTS;
    const fe = FIELD_ENDS;
    let pos = ls;
    for (let i = 0; i < F.COUNT; i++) {
      fs[i] = pos;
      while (pos < le && b[pos] !== SP) pos++;
      fe[i] = pos;
      if (pos < le) pos++;
    }
    const xattrStart = pos;
    const bs = this.findBackslash(b, ls);
    const anyEscape = bs >= 0 && bs < le;

    // PATH (a C string: an escaped NUL truncates it)
    let pb = b;
    let ps = fs[F.PATH]!;
    let pe = fe[F.PATH]!;
    if (anyEscape && bs < pe) {
      pb = this.unescapeCStr(b, ps, pe, 'PATH');
      ps = 0;
      pe = pb.length;
    }
    if (pe === ps) throw new LineError('Invalid empty path', 'PATH');

    // MODE, with '@' hardlink marker
    let ms = fs[F.MODE]!;
    const me = fe[F.MODE]!;
    let isHardlink = false;
    if (me > ms && b[ms] === 0x40) {
      isHardlink = true;
      ms++;
    }
    const mode = u32Field(b, ms, me, 8, 'MODE', true);
    if (!isValidType(mode)) throw new LineError(`Invalid mode ${mode.toString(8)}`, 'MODE');

    const node = new TreeNode(EMPTY, mode);
    this.addNode(pb, ps, pe, node);

    if (isHardlink) {
      if ((mode & 0o170000) === S_IFDIR) throw new LineError("Directories can't be hardlinked", 'MODE');
      const target = this.unescapeOptionalCStr(b, fs[F.PAYLOAD]!, fe[F.PAYLOAD]!, 'PAYLOAD');
      this.fixups.push({ node, target: target && retain(target, b), line: this.lineNo });
      return;
    }

    const size = bigField(b, fs[F.SIZE]!, fe[F.SIZE]!, 'SIZE');
    const nlink = u32Field(b, fs[F.NLINK]!, fe[F.NLINK]!, 10, 'NLINK', true);
    // UID: whether it is 0 matters for the GID/RDEV bug below (the u64 value, not truncated)
    const uidV = strtoullField(b, fs[F.UID]!, fe[F.UID]!, 10);
    if (uidV === undefined) throw new LineError(`Invalid integer ${b.toString('latin1', fs[F.UID]!, fe[F.UID]!)}`, 'UID');
    const uidZero = uidV === 0;
    // mkcomposefs bug, replicated: GID and RDEV errors are only reported when UID is 0.
    const gid = u32Field(b, fs[F.GID]!, fe[F.GID]!, 10, 'GID', uidZero);
    const rdevV = strtoullField(b, fs[F.RDEV]!, fe[F.RDEV]!, 10);
    if (rdevV === undefined && uidZero) {
      throw new LineError(`Invalid integer ${b.toString('latin1', fs[F.RDEV]!, fe[F.RDEV]!)}`, 'RDEV');
    }

    // MTIME: SEC.NSEC, split at the first '.'
    const ts = fs[F.MTIME]!;
    const te = fe[F.MTIME]!;
    let dot = ts;
    while (dot < te && b[dot] !== 0x2e) dot++;
    const secV = strtoullField(b, ts, dot, 10);
    if (secV === undefined) throw new LineError(`Invalid integer ${b.toString('latin1', ts, dot)}`, 'MTIME');
    const ns0 = dot < te ? dot + 1 : te;
    const nsecV = strtoullField(b, ns0, te, 10);
    if (nsecV === undefined) throw new LineError(`Invalid integer ${b.toString('latin1', ns0, te)}`, 'MTIME');

    const payload = this.ownedOptional(b, fs[F.PAYLOAD]!, fe[F.PAYLOAD]!, 'PAYLOAD', true);
    const content = this.ownedOptional(b, fs[F.CONTENT]!, fe[F.CONTENT]!, 'CONTENT', false);
    if (content && BigInt(content.length) !== size) {
      throw new LineError(
        `Invalid content size ${content.length}, must match size ${BigInt.asIntN(64, size)}`,
        'CONTENT',
      );
    }
    const ds = fs[F.DIGEST]!;
    const de = fe[F.DIGEST]!;
    const digestPresent = !(de - ds === 1 && b[ds] === 0x2d);
    const digestText = digestPresent && anyEscape && bs < de ? this.unescapeCStr(b, ds, de, 'DIGEST') : undefined;

    const type = mode & 0o170000;
    if (type !== S_IFLNK) node.size = size;
    node.nlink = nlink;
    node.uid = toU32(uidV);
    node.gid = gid;
    const rdev = rdevV === undefined ? 0 : rdevV;
    if (type === S_IFCHR || type === S_IFBLK) node.rdev = typeof rdev === 'bigint' ? rdev : BigInt(rdev);
    else if (this.strict && rdev !== 0) throw new LineError('Non-zero devnum on non-device', 'RDEV');
    node.mtimeSec = this.secBig(secV);
    node.mtimeNsec = toU32(nsecV);

    if (type === S_IFLNK) {
      if (!payload || payload.length === 0 || payload.length >= PATH_MAX) {
        throw new LineError('Invalid symlink', 'PAYLOAD');
      }
      node.payload = payload;
      node.size = BigInt(payload.length);
      if (this.strict) {
        if (size !== BigInt(payload.length)) {
          throw new LineError(
            `Invalid symlink size ${payload.length}, must match size ${BigInt.asIntN(64, size)}`,
            'SIZE',
          );
        }
        if (content && content.length > 0) throw new LineError('Symlink cannot have content', 'CONTENT');
      }
    } else {
      if (payload && payload.length >= PATH_MAX) throw new LineError('Invalid payload', 'PAYLOAD');
      node.payload = payload;
      if (content) {
        if (content.length > LCFS_INLINE_CONTENT_MAX) {
          throw new LineError(
            `Inline content size ${content.length} exceeds maximum ${LCFS_INLINE_CONTENT_MAX}`,
            'CONTENT',
          );
        }
        node.content = content.length > 0 ? content : undefined;
        node.size = BigInt(content.length);
      }
    }

    if (digestPresent) {
      node.digest = digestText ? this.decodeDigest(digestText, 0, digestText.length) : this.decodeDigest(b, ds, de);
    }

    // Xattrs
    if (le - xattrStart > 0xffff) throw new LineError('Too many xattrs', 'XATTRS');
    if (xattrStart < le) this.parseXattrs(node, b, xattrStart, le);
  }

  private parseXattrs(node: TreeNode, b: Buffer, xs: number, le: number): void {
    const list = this.xlist;
    list.length = 0;
    let budget = 0;
    while (xs < le) {
      let itemEnd = xs;
      let eq = -1;
      while (itemEnd < le) {
        const c = b[itemEnd]!;
        if (c === SP) break;
        if (c === 0x3d && eq < 0) eq = itemEnd;
        itemEnd++;
      }
      if (eq < 0) throw new LineError('Missing = in xattr', 'XATTRS');
      const key = this.internRaw(b, xs, eq, true);
      let pair: Xattr | undefined;
      if (itemEnd - eq - 1 <= 128) {
        // interned key and value: share the (immutable) pair object too
        const value = this.internRaw(b, eq + 1, itemEnd, false);
        pair = this.pairs.get(value);
        if (!pair || pair.key !== key) {
          pair = { key, value };
          if (this.pairs.size > 100_000) this.pairs.clear();
          this.pairs.set(value, pair);
        }
      } else {
        pair = { key, value: retain(this.unescape(b, eq + 1, itemEnd, 'XATTRS'), b) };
      }
      budget = setXattrBudgeted(list, pair, budget);
      if (budget < 0) throw new LineError("Can't set xattr", 'XATTRS');
      xs = itemEnd < le ? itemEnd + 1 : le;
    }
    // an exactly sized array (a pushed-to array keeps spare capacity)
    node.xattrs = list.length === 1 ? [list[0]!] : list.slice();
    list.length = 0;
  }

  /** mtime seconds as a signed 64-bit bigint, reusing the previous value (dumps repeat them). */
  private secBig(v: number | bigint): bigint {
    if (v === this.lastSecIn) return this.lastSecOut;
    const r = typeof v === 'bigint' ? BigInt.asIntN(64, v) : BigInt(v);
    this.lastSecIn = v;
    this.lastSecOut = r;
    return r;
  }

  // -- tree insertion -------------------------------------------------------------------------------

  /** Insert `node` at path pb[s, e) (mkcomposefs tree_add_node semantics). */
  private addNode(pb: Buffer, s: number, e: number, node: TreeNode): void {
    const len = e - s;
    if (len === 1 && pb[s] === SLASH) {
      if ((node.mode & 0o170000) !== S_IFDIR) throw new LineError('Root must be a directory', 'MODE');
      if (this.root) throw new LineError("Can't have multiple roots", 'PATH');
      this.root = node;
      return;
    }
    const root = this.root;
    if (!root) throw new LineError('Root node not present', 'PATH');
    const path = (): string => pb.toString('utf8', s, e);

    let nameStart = e;
    while (nameStart > s && pb[nameStart - 1] !== SLASH) nameStart--;
    const prefixLen = nameStart - s;
    let parent: TreeNode | undefined;
    const lp = this.lastPrefix;
    if (this.lastParent && lp.length === prefixLen) {
      let k = 0;
      while (k < prefixLen && lp[k] === pb[s + k]) k++;
      if (k === prefixLen) parent = this.lastParent;
    }
    if (!parent) {
      let p: TreeNode = root;
      let i = s;
      for (;;) {
        while (i < e && pb[i] === SLASH) i++;
        const start = i;
        while (i < e && pb[i] !== SLASH) i++;
        if (i >= e) break; // final component: the name
        const child: TreeNode | undefined = p.getChild(pb.subarray(start, i));
        if (!child) throw new LineError(`Parent directory missing for ${path()}`, 'PATH');
        p = child;
      }
      if ((p.mode & 0o170000) !== S_IFDIR) throw new LineError(`Parent must be a directory for ${path()}`, 'PATH');
      parent = p;
      this.lastPrefix = Buffer.from(pb.subarray(s, nameStart));
      this.lastParent = p;
    }
    const nameLen = e - nameStart;
    if (
      (nameLen === 1 && pb[nameStart] === 0x2e) ||
      (nameLen === 2 && pb[nameStart] === 0x2e && pb[nameStart + 1] === 0x2e)
    ) {
      throw new LineError(`Invalid . or .. in path: ${path()}`, 'PATH');
    }
    if (nameLen === 0 || nameLen > LCFS_MAX_NAME_LENGTH) throw new LineError("Can't add child", 'PATH');
    node.name = copyRange(pb, nameStart, e);
    // mkcomposefs means to say "Path … already exist" but compares -1 with -EEXIST
    if (!parent.addChild(node)) throw new LineError("Can't add child", 'PATH');
  }

  private resolveHardlinks(): void {
    const root = this.root!;
    for (let i = this.fixups.length - 1; i >= 0; i--) {
      const f = this.fixups[i]!;
      const fail = (reason: string): never => {
        throw new DumpfileSyntaxError(reason, f.line, 'PAYLOAD', this.source);
      };
      if (!f.target) fail('No target path for the hardlink');
      const target = lookupCPath(root, f.target!);
      if (!target) fail(`No target at ${show(f.target!)} for hardlink`);
      if (target === f.node) fail(`Self-referential hardlink ${show(f.target!)}`);
      // mkcomposefs keeps the target's NLINK from the dumpfile. A target whose own link chain is
      // cyclic makes mkcomposefs fail when writing; we link anyway and the writer reports ELOOP.
      f.node.linkTo = target;
    }
    this.fixups.length = 0;
  }

  // -- field decoding ---------------------------------------------------------------------------------

  /** digest_to_raw() over d[s, e): leading hex pairs, stopping at a bad character or 32 bytes. */
  private decodeDigest(d: Buffer, s: number, e: number): Buffer {
    if (this.requireValidDigest) {
      let ok = e - s === 64;
      for (let i = s; ok && i < e; i++) ok = HEX[d[i]!]! >= 0;
      if (!ok) throw new LineError(`Invalid digest ${d.toString('latin1', s, e)}: expected 64 hex characters`, 'DIGEST');
    }
    const raw = Buffer.allocUnsafe(32);
    let size = 0;
    let i = s;
    while (i < e && size < 32) {
      const n1 = HEX[d[i++]!]!;
      if (n1 < 0) break;
      const n2 = i < e ? HEX[d[i++]!]! : -1;
      if (n2 < 0) break;
      raw[size++] = (n1 << 4) | n2;
    }
    if (size < 32) raw.fill(0, size); // C leaves these bytes undefined
    return raw;
  }

  /**
   * Unescaped xattr key (C string) or value of b[s, e), interned: a small hash table keyed by the
   * raw (escaped) bytes returns the shared Buffer without unescaping or allocating on a hit.
   */
  private internRaw(b: Buffer, s: number, e: number, isKey: boolean): Buffer {
    let h = isKey ? 0x811c9dc5 : 0x01000193;
    for (let i = s; i < e; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
    const slot = (h >>> 0) & (INTERN_SLOTS - 1);
    const raw = this.internRawKeys[slot];
    if (raw && raw.length === e - s && this.internIsKey[slot] === (isKey ? 1 : 0)) {
      let k = 0;
      const n = e - s;
      while (k < n && raw[k] === b[s + k]) k++;
      if (k === n) return this.internVals[slot]!;
    }
    let v = isKey ? this.unescapeCStr(b, s, e, 'XATTRS') : this.unescape(b, s, e, 'XATTRS');
    v = retain(v, b);
    this.internRawKeys[slot] = copyRange(b, s, e);
    this.internVals[slot] = v;
    this.internIsKey[slot] = isKey ? 1 : 0;
    return v;
  }

  private findNul(b: Buffer, s: number): number {
    if (b !== this.nulBuf || s < this.nulFrom || (this.nulPos >= 0 && this.nulPos < s)) {
      this.nulBuf = b;
      this.nulFrom = s;
      this.nulPos = b.indexOf(0, s);
    }
    return this.nulPos;
  }

  private findBackslash(b: Buffer, s: number): number {
    if (b !== this.bsBuf || s < this.bsFrom || (this.bsPos >= 0 && this.bsPos < s)) {
      this.bsBuf = b;
      this.bsFrom = s;
      this.bsPos = b.indexOf(BS, s);
    }
    return this.bsPos;
  }

  /**
   * Unescape [s, e): a view of `b` when there is nothing to unescape, else a fresh Buffer.
   * Callers that keep the result pass it through retain().
   */
  private unescape(b: Buffer, s: number, e: number, field: DumpfileField): Buffer {
    const bs = this.findBackslash(b, s);
    if (bs < 0 || bs >= e) return b.subarray(s, e);
    if (this.scratch.length < e - s) this.scratch = Buffer.allocUnsafe(Math.max(e - s, this.scratch.length * 2));
    const out = this.scratch;
    let o = 0;
    let i = s;
    while (i < e) {
      const c = b[i++]!;
      if (c !== BS) {
        out[o++] = c;
        continue;
      }
      if (i >= e) throw new LineError('No character after escape', field);
      const x = b[i++]!;
      switch (x) {
        case BS:
          out[o++] = BS;
          break;
        case 0x6e: // n
          out[o++] = 0x0a;
          break;
        case 0x72: // r
          out[o++] = 0x0d;
          break;
        case 0x74: // t
          out[o++] = 0x09;
          break;
        case 0x78: {
          // x
          if (i >= e) throw new LineError('No hex characters after hex escape', field);
          const h1 = HEX[b[i++]!]!;
          if (i >= e) throw new LineError('No hex characters after hex escape', field);
          const h2 = HEX[b[i++]!]!;
          if (h1 < 0 || h2 < 0) throw new LineError('Invalid hex characters after hex escape', field);
          out[o++] = (h1 << 4) | h2;
          break;
        }
        default:
          throw new LineError(`Unsupported escape type ${Buffer.from([x]).toString('utf8')}`, field);
      }
    }
    return copyRange(out, 0, o);
  }

  /** Unescape and truncate at the first NUL (C string semantics). */
  private unescapeCStr(b: Buffer, s: number, e: number, field: DumpfileField): Buffer {
    const v = this.unescape(b, s, e, field);
    const z = v.indexOf(0);
    return z >= 0 ? v.subarray(0, z) : v;
  }

  /** An optional field as a Buffer of its own (never a view of the input). */
  private ownedOptional(b: Buffer, s: number, e: number, field: DumpfileField, cstr: boolean): Buffer | undefined {
    if (e - s === 1 && b[s] === 0x2d) return undefined;
    const bs = this.findBackslash(b, s);
    if (bs < 0 || bs >= e) return copyRange(b, s, e); // no escapes, so no NUL either
    const v = this.unescape(b, s, e, field); // fresh
    if (!cstr) return v;
    const z = v.indexOf(0);
    return z >= 0 ? v.subarray(0, z) : v;
  }

  private unescapeOptionalCStr(b: Buffer, s: number, e: number, field: DumpfileField): Buffer | undefined {
    if (e - s === 1 && b[s] === 0x2d) return undefined;
    return this.unescapeCStr(b, s, e, field);
  }
}

const INTERN_SLOTS = 1024;

/** A fresh copy of b[s, e) (pooled allocation, plain loop for short ranges). */
function copyRange(b: Uint8Array, s: number, e: number): Buffer {
  const n = e - s;
  const out = Buffer.allocUnsafe(n);
  if (n <= 32) for (let i = 0; i < n; i++) out[i] = b[s + i]!;
  else out.set(b.subarray(s, e));
  return out;
}

const toU32 = (v: number | bigint): number => (typeof v === 'bigint' ? Number(v & 0xffffffffn) : v >>> 0);

const FIELD_STARTS = new Array<number>(F.COUNT).fill(0);
const FIELD_ENDS = new Array<number>(F.COUNT).fill(0);

/**
 * `strtoull(field, &end, base)` + "whole field consumed" check of mkcomposefs' parse_int_field:
 * leading C whitespace, one sign ('-' wraps modulo 2^64), overflow saturates to 2^64−1.
 * Returns a number when the value is below 2^53, else a bigint; undefined on error.
 */
function strtoullField(b: Buffer, s: number, e: number, base: 8 | 10): number | bigint | undefined {
  if (s >= e) return undefined;
  // Fast path: plain digits, short enough for a double.
  if (e - s <= 15) {
    let v = 0;
    let i = s;
    for (; i < e; i++) {
      const d = b[i]! - 0x30;
      if (d < 0 || d >= base) break;
      v = v * base + d;
    }
    if (i === e) return v;
  }
  let i = s;
  while (i < e && isCSpace(b[i]!)) i++;
  let neg = false;
  if (i < e && (b[i] === 0x2b || b[i] === 0x2d)) {
    neg = b[i] === 0x2d;
    i++;
  }
  const digitsStart = i;
  let v = 0n;
  let overflow = false;
  const bb = BigInt(base);
  for (; i < e; i++) {
    const d = b[i]! - 0x30;
    if (d < 0 || d >= base) break;
    if (!overflow) {
      v = v * bb + BigInt(d);
      if (v > U64_MAX) overflow = true;
    }
  }
  if (i === digitsStart) return undefined; // no digits: endptr = start
  if (i !== e) return undefined; // trailing garbage
  const r = overflow ? U64_MAX : neg ? (U64_MAX + 1n - v) & U64_MAX : v;
  return r < 0x20000000000000n ? Number(r) : r;
}

/** A u64 field as bigint (SIZE). */
function bigField(b: Buffer, s: number, e: number, field: DumpfileField): bigint {
  const v = strtoullField(b, s, e, 10);
  if (v === undefined) throw new LineError(`Invalid integer ${b.toString('latin1', s, e)}`, field);
  if (typeof v === 'bigint') return v;
  return v === 0 ? 0n : BigInt(v);
}

/** A field truncated to u32 (MODE, NLINK, GID); an invalid value is 0, reported only if `report`. */
function u32Field(b: Buffer, s: number, e: number, base: 8 | 10, field: DumpfileField, report: boolean): number {
  const v = strtoullField(b, s, e, base);
  if (v === undefined) {
    if (report) throw new LineError(`Invalid integer ${b.toString('latin1', s, e)}`, field);
    return 0;
  }
  return toU32(v);
}

/**
 * lcfs_node_set_xattr() on a node being parsed: replaces an existing key, enforces the key
 * length (1..255) and the 32767-byte per-inode budget. Returns the new budget, or −1 on error.
 */
function setXattrBudgeted(xs: Xattr[], pair: Xattr, budget: number): number {
  const key = pair.key;
  const value = pair.value;
  if (key.length === 0 || key.length > XATTR_NAME_MAX) return -1;
  if (value.length > 0xffff) return -1;
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    if (x.key === key || x.key.equals(key)) {
      const oldLen = x.value.length;
      // lcfs_node_unset_xattr: move the last entry into the hole
      const last = xs.pop()!;
      if (i < xs.length) xs[i] = last;
      budget = xs.length > 0 ? budget - (LCFS_XATTR_ENTRY_OVERHEAD + key.length + oldLen) : 0;
      break;
    }
  }
  let entry = LCFS_XATTR_ENTRY_OVERHEAD + key.length + value.length;
  if (xs.length === 0) entry += LCFS_XATTR_HEADER_SIZE;
  if (budget + entry > LCFS_INODE_EXTERNAL_XATTR_MAX) return -1;
  xs.push(pair);
  return budget + entry;
}

/** mkcomposefs' lookup_path(): from the root, leading and repeated '/' ignored, no normalization. */
function lookupCPath(root: TreeNode, p: Buffer): TreeNode | undefined {
  let n: TreeNode | undefined = root;
  let i = 0;
  const len = p.length;
  for (;;) {
    while (i < len && p[i] === SLASH) i++;
    if (i >= len) return n;
    const start = i;
    while (i < len && p[i] !== SLASH) i++;
    n = n.getChild(p.subarray(start, i));
    if (!n) return undefined;
  }
}

/** Anything a dumpfile can be read from. */
export type DumpfileInput = Buffer | Uint8Array | string | Readable | AsyncIterable<Uint8Array | string>;

/** Parse a whole dumpfile held in memory. */
export function parseDumpfileSync(input: Buffer | Uint8Array | string, opts: ParseDumpfileOptions = {}): TreeNode {
  const p = new DumpfileParser(opts);
  p.push(typeof input === 'string' ? Buffer.from(input) : Buffer.isBuffer(input) ? input : Buffer.from(input));
  return p.end();
}

/** Parse a dumpfile from a buffer, string, Readable or async iterable of chunks (streaming). */
export async function parseDumpfile(input: DumpfileInput, opts: ParseDumpfileOptions = {}): Promise<TreeNode> {
  if (typeof input === 'string' || input instanceof Uint8Array) return parseDumpfileSync(input, opts);
  const p = new DumpfileParser(opts);
  for await (const chunk of input as AsyncIterable<Uint8Array | string>) {
    p.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  }
  return p.end();
}
