/**
 * Tree → composefs EROFS image, byte-identical to `mkcomposefs --from-file` 1.0.8
 * (spec: composefs-format.md §4–§6; libcomposefs lcfs-writer-erofs.c).
 *
 * Pipeline: version selection (§4.1) → rewrite on a private copy of the tree (§4.2) →
 * breadth-first inode order (§4.3) → shared xattr table (§4.4) → sizes and placement (§4.5–4.7)
 * → emission (§6). The metadata region (header, superblock, inodes, shared xattrs) is built in one
 * preallocated zero-filled buffer; data blocks (directory blocks, spilled content) are produced
 * in bounded chunks.
 */
import { registerTempPath } from '../../cleanup.js';
import { OstreeOciError } from '../../errors.js';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { TreeNode, S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFBLK, isValidType } from '../../tree/model.js';
import { ComposefsOptionsError, ComposefsWriteError, type ComposefsWriteCode } from '../errors.js';
import {
  COMPOSEFS_HEADER,
  DIRENT,
  EROFS_BLKSIZ,
  EROFS_BLKSIZ_BITS,
  EROFS_FEATURE_COMPAT_MTIME,
  EROFS_FEATURE_COMPAT_XATTR_FILTER,
  EROFS_INODE_CHUNK_BASED,
  EROFS_INODE_FLAT_INLINE,
  EROFS_INODE_FLAT_PLAIN,
  EROFS_INODES_START,
  EROFS_I_DATALAYOUT_BIT,
  EROFS_SLOTSIZE,
  EROFS_SUPER_MAGIC_V1,
  EROFS_SUPER_OFFSET,
  EROFS_XATTR_FILTER_DEFAULT,
  EROFS_XATTR_LONG_PREFIX,
  INODE_COMPACT,
  INODE_EXTENDED,
  LCFS_DEFAULT_VERSION_MAX,
  LCFS_DEFAULT_VERSION_MIN,
  LCFS_EROFS_FLAGS_HAS_ACL,
  LCFS_EROFS_MAGIC,
  LCFS_EROFS_VERSION,
  LCFS_INLINE_CONTENT_MAX,
  LCFS_INODE_EXTERNAL_XATTR_MAX,
  LCFS_MAX_NAME_LENGTH,
  LCFS_MAX_NONINLINE_CHUNKS,
  LCFS_VERSION_MAX,
  LCFS_XATTR_ENTRY_OVERHEAD,
  LCFS_XATTR_HEADER_SIZE,
  METACOPY_SHA256_LEN,
  OVERLAY,
  PATH_MAX,
  SUPERBLOCK,
  XATTR_IBODY_HEADER,
  XATTR_NAME_MAX,
  XATTR_SIZE_MAX,
  computeChunking,
  erofsFileType,
} from './format.js';
import { KeyTable, ValueTable, V_METACOPY, V_PLAIN, V_REDIRECT, type KeyInfo } from './xattr-table.js';
import { writeChunks } from '../../write-chunks.js';

export interface ErofsWriteOptions {
  /**
   * Minimum composefs format version (mkcomposefs --min-version). When neither version is given
   * the range is 0..1; when only one is given the other one defaults to 0 (as in mkcomposefs).
   */
  minVersion?: number;
  /** Maximum format version (mkcomposefs --max-version). */
  maxVersion?: number;
}

// ---------------------------------------------------------------------------------------------
// Constants (xattr keys/values are handled as latin1 strings inside the writer: one char = one
// byte, and JS string order equals strcmp order for them)

const S_OVERLAY_PREFIX = OVERLAY.prefix;
const S_ESCAPE_PREFIX = OVERLAY.escapePrefix;
const S_SELINUX = 'security.selinux';
const S_ACL_ACCESS = 'system.posix_acl_access';
const S_ACL_DEFAULT = 'system.posix_acl_default';
const V_EMPTY = Buffer.alloc(0);
const V_X = Buffer.from('x');
const V_Y = Buffer.from('y');

/** Stand-ins for the `.` and `..` entries libcomposefs adds to every directory. */
const DOT = new TreeNode(Buffer.from('.'));
const DOTDOT = new TreeNode(Buffer.from('..'));

const fail = (code: ComposefsWriteCode, path: TreeNode | string, reason: string): never => {
  throw new ComposefsWriteError(code, typeof path === 'string' ? path : path.pathString(), reason);
};

function lowerBound(arr: readonly TreeNode[], name: Buffer): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (Buffer.compare(arr[mid]!.name, name) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const hasName = (arr: readonly TreeNode[], name: Buffer): boolean => {
  const i = lowerBound(arr, name);
  return i < arr.length && arr[i]!.name.equals(name);
};

function mergeSorted(a: readonly TreeNode[], b: readonly TreeNode[]): TreeNode[] {
  const out = new Array<TreeNode>(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = Buffer.compare(a[i]!.name, b[j]!.name) <= 0 ? a[i++]! : b[j++]!;
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}

/** The directory's entries as libcomposefs has them: children plus `.` and `..`, sorted. */
function withDots(kids: readonly TreeNode[]): TreeNode[] {
  const arr = kids.slice();
  for (const d of [DOT, DOTDOT]) {
    const i = lowerBound(arr, d.name);
    if (i < arr.length && arr[i]!.name.equals(d.name)) continue;
    arr.splice(i, 0, d);
  }
  return arr;
}

// ---------------------------------------------------------------------------------------------
// Options

/**
 * Resolve (min, max) as mkcomposefs does; throws for versions it rejects. The versions are
 * `uint32_t` in libcomposefs: a negative number is a huge version there, hence rejected.
 */
export function resolveVersions(opts: ErofsWriteOptions): { min: number; max: number } {
  let min: number;
  let max: number;
  if (opts.minVersion === undefined && opts.maxVersion === undefined) {
    min = LCFS_DEFAULT_VERSION_MIN;
    max = LCFS_DEFAULT_VERSION_MAX;
  } else {
    min = opts.minVersion ?? 0;
    max = opts.maxVersion ?? 0;
  }
  for (const [n, v] of [
    ['minVersion', min],
    ['maxVersion', max],
  ] as const) {
    if (!Number.isSafeInteger(v)) throw new ComposefsOptionsError(`invalid composefs ${n} ${v}: must be an integer`);
  }
  const umin = Number(BigInt.asUintN(32, BigInt(min)));
  let umax = Number(BigInt.asUintN(32, BigInt(max)));
  if (umin > LCFS_VERSION_MAX || umax > LCFS_VERSION_MAX) {
    throw new ComposefsOptionsError(
      `unsupported composefs format version (min ${min}, max ${max}): the highest is ${LCFS_VERSION_MAX}`,
    );
  }
  if (umax < umin) umax = umin;
  return { min: umin, max: umax };
}

const isUserWhiteout = (n: TreeNode): boolean => (n.mode & S_IFMT) === S_IFCHR && (n.rdev & 0xffffffffn) === 0n;

/** §4.1: the format version mkcomposefs would write for this tree. */
export function selectVersion(root: TreeNode, opts: ErofsWriteOptions = {}): number {
  const { min, max } = resolveVersions(opts);
  if (!(min < 1 && max >= 1)) return min;
  const stack: TreeNode[] = [root];
  while (stack.length) {
    const n = stack.pop()!;
    if (isUserWhiteout(n)) return 1;
    for (const c of n.children()) if (!c.linkTo) stack.push(c);
  }
  return min;
}

// ---------------------------------------------------------------------------------------------
// The laid-out image

interface Layout {
  version: number;
  nodes: TreeNode[];
  dirents: (TreeNode[] | undefined)[];
  /** Per directory: index into `dtarget` of its first entry. */
  dstart: Int32Array;
  /** Inode index each directory entry points to (hardlinks resolved). */
  dtarget: Int32Array;
  mode: Uint32Array;
  nid: Float64Array;
  nBlocks: Uint32Array;
  blkaddr: Uint32Array;
  isExt: Uint8Array;
  /** The metadata region [0, dataStart) in chunks of at most `window` bytes. */
  metaChunks: (window: number, fresh: (n: number) => Buffer, recycle: (b: Buffer) => void) => Generator<Buffer>;
  dataStart: number;
  nDataBlocks: number;
}

/** A fully laid-out image: call `chunks()` (or toBuffer()) to get the bytes. */
export class ErofsImage {
  /** composefs format version written in the header. */
  readonly version: number;
  /** Total image size in bytes (a multiple of 4096). */
  readonly size: number;
  readonly inodeCount: number;
  private readonly l: Layout;

  /** @internal use buildErofs() */
  constructor(l: Layout) {
    this.l = l;
    this.version = l.version;
    this.size = l.dataStart + l.nDataBlocks * EROFS_BLKSIZ;
    this.inodeCount = l.nodes.length;
  }

  /**
   * Symlinks whose inode, xattrs and target together reach 4096 bytes, so that the target is not
   * inline but in a data block of its own. mkcomposefs 1.0.8 writes them so; libostree's composefs
   * builder (2026.4) aborts on such a tree, so the commit paths refuse them.
   */
  symlinksInDataBlocks(): TreeNode[] {
    const l = this.l;
    const out: TreeNode[] = [];
    for (let i = 0; i < l.nodes.length; i++) {
      if ((l.mode[i]! & S_IFMT) === S_IFLNK && l.nBlocks[i]! > 0) out.push(l.nodes[i]!);
    }
    return out;
  }

  /**
   * The image bytes in order: the metadata region, then data blocks in chunks of at most
   * `chunkBlocks` blocks. Each yielded Buffer is fresh (safe to keep or write asynchronously),
   * unless `reuse` is set: then the generator recycles its buffers, and a chunk is valid only
   * until the next one is requested (no garbage: for a consumer that writes each chunk out).
   */
  *chunks(chunkBlocks = 256, reuse = false): Generator<Buffer> {
    const l = this.l;
    const size = chunkBlocks * EROFS_BLKSIZ;
    let spare: Buffer | undefined;
    const fresh = (n: number): Buffer => {
      if (reuse && spare && spare.length >= n) {
        const b = spare.subarray(0, n).fill(0);
        spare = undefined;
        return b;
      }
      return Buffer.alloc(n);
    };
    const recycle = (b: Buffer): void => {
      if (reuse && b.buffer.byteLength >= size && (!spare || spare.length < b.buffer.byteLength)) {
        spare = Buffer.from(b.buffer, b.byteOffset, b.buffer.byteLength - b.byteOffset);
      }
    };
    yield* l.metaChunks(Math.min(size, l.dataStart), fresh, recycle);
    if (l.nDataBlocks === 0) return;
    let buf = fresh(size);
    let dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let used = 0;
    let emitted = 0;
    const first = l.dataStart / EROFS_BLKSIZ;
    for (let i = 0; i < l.nodes.length; i++) {
      const nb = l.nBlocks[i]!;
      if (nb === 0) continue;
      if (l.blkaddr[i] !== first + emitted + used) throw new Error('internal: data blocks out of order');
      const t = l.mode[i]! & S_IFMT;
      const n = l.nodes[i]!;
      if (t === S_IFDIR) {
        const kids = l.dirents[i]!;
        const ds = l.dstart[i]!;
        let cur = 0;
        let firstK = 0;
        let written = 0;
        for (let k = 0; k < kids.length; k++) {
          const len = DIRENT.SIZE + kids[k]!.name.length;
          if (cur + len > EROFS_BLKSIZ) {
            if (used === chunkBlocks) {
              yield buf;
              emitted += used;
              recycle(buf);
              buf = fresh(size);
              dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
              used = 0;
            }
            writeDirChunk(buf, dv, used * EROFS_BLKSIZ, kids, firstK, k, l.dtarget, ds, l.nid, l.mode);
            used++;
            written++;
            cur = 0;
            firstK = k;
          }
          cur += len;
        }
        if (written < nb) {
          if (used === chunkBlocks) {
            yield buf;
            emitted += used;
            recycle(buf);
            buf = fresh(size);
            dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
            used = 0;
          }
          writeDirChunk(buf, dv, used * EROFS_BLKSIZ, kids, firstK, kids.length, l.dtarget, ds, l.nid, l.mode);
          used++;
          written++;
        }
        if (written !== nb) throw new Error(`internal: block count of directory ${n.pathString()}`);
      } else {
        if (used === chunkBlocks) {
          yield buf;
          emitted += used;
          recycle(buf);
          buf = fresh(size);
          dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
          used = 0;
        }
        const off = used * EROFS_BLKSIZ;
        if (t === S_IFREG) {
          if (!l.isExt[i]) n.content!.copy(buf, off, 0, Math.min(n.content!.length, EROFS_BLKSIZ));
          else buf.fill(0xff, off, off + EROFS_BLKSIZ); // 1024 hole entries
        } else if (t === S_IFLNK) {
          n.payload!.copy(buf, off);
        }
        used++;
      }
    }
    if (used > 0) {
      yield used === chunkBlocks ? buf : buf.subarray(0, used * EROFS_BLKSIZ);
      emitted += used;
    }
    if (emitted !== l.nDataBlocks) throw new Error('internal: data block count mismatch');
  }

  /** The whole image in one Buffer. */
  toBuffer(): Buffer {
    return Buffer.concat([...this.chunks()], this.size);
  }
}

function writeDirChunk(
  buf: Buffer,
  dv: DataView,
  off: number,
  kids: TreeNode[],
  first: number,
  end: number,
  dtarget: Int32Array,
  ds: number,
  nid: Float64Array,
  mode: Uint32Array,
): void {
  let nameoff = (end - first) * DIRENT.SIZE;
  let p = off;
  for (let k = first; k < end; k++) {
    const t = dtarget[ds + k]!;
    const v = nid[t]!;
    dv.setUint32(p + DIRENT.nid, v >>> 0, true);
    dv.setUint32(p + DIRENT.nid + 4, Math.floor(v / 0x100000000) >>> 0, true);
    dv.setUint16(p + DIRENT.nameoff, nameoff & 0xffff, true);
    buf[p + DIRENT.fileType] = erofsFileType(mode[t]!);
    buf[p + DIRENT.reserved] = 0;
    nameoff += kids[k]!.name.length;
    p += DIRENT.SIZE;
  }
  for (let k = first; k < end; k++) {
    const nm = kids[k]!.name;
    const ln = nm.length;
    if (ln <= 32) for (let j = 0; j < ln; j++) buf[p + j] = nm[j]!;
    else nm.copy(buf, p);
    p += ln;
  }
}

const roundUp32 = (x: number): number => Math.ceil(x / EROFS_SLOTSIZE) * EROFS_SLOTSIZE;

// ---------------------------------------------------------------------------------------------
// Build

/** Lay out the image for `root`. The caller's tree is not modified (§4.2 runs on derived data). */
export function buildErofs(root: TreeNode, opts: ErofsWriteOptions = {}): ErofsImage {
  if ((root.mode & S_IFMT) !== S_IFDIR || root.linkTo) fail('EINVAL', '/', 'the root must be a directory');
  const { min, max } = resolveVersions(opts);
  const b = new Builder(root, min, max);
  try {
    b.order();
    b.resolveEntries();
    b.rewrite();
    b.layout();
    return b.finish();
  } catch (e) {
    // Report the error mkcomposefs would (its traversal order differs from ours).
    if (e instanceof ComposefsWriteError) throw firstErrorInCOrder(root, selectVersion(root, opts)) ?? e;
    throw e;
  }
}

/** Results of validateInode() (module scratch: no allocation per inode). */
const VAL = { size: 0, ext: false, chunkBits: 0, chunkCount: 0 };

/**
 * §4.2 a: lcfs_node_validate() plus the checks a tree that did not come from a dumpfile needs
 * (mkcomposefs' parser guarantees them). Sets VAL.
 */
function validateInode(n: TreeNode): void {
  const m = n.mode >>> 0;
  const t = m & S_IFMT;
  if (!isValidType(m)) fail('EINVAL', n, `invalid file type in mode 0${m.toString(8)}`);
  VAL.ext = false;
  if (t === S_IFLNK) {
    const p = n.payload;
    if (!p || p.length === 0 || p.length >= PATH_MAX || p.includes(0)) fail('EINVAL', n, 'invalid symlink target');
    VAL.size = p!.length;
  } else {
    const big = n.size < 0n ? BigInt.asUintN(64, n.size) : n.size;
    VAL.size = Number(big);
    if (t === S_IFREG && VAL.size > 0) {
      const c = n.content;
      if (c && c.length > 0) {
        if (c.length !== VAL.size) fail('EINVAL', n, `inline content of ${c.length} bytes for a file of size ${big}`);
        if (c.length > LCFS_INLINE_CONTENT_MAX) {
          fail('EINVAL', n, `inline content of ${c.length} bytes exceeds ${LCFS_INLINE_CONTENT_MAX}`);
        }
      } else {
        const ch = computeChunking(big);
        if (ch.chunkCount > LCFS_MAX_NONINLINE_CHUNKS) {
          fail('EFBIG', n, `external file of ${big} bytes needs ${ch.chunkCount} chunks (max ${LCFS_MAX_NONINLINE_CHUNKS})`);
        }
        VAL.ext = true;
        VAL.chunkBits = ch.chunkBits;
        VAL.chunkCount = ch.chunkCount;
      }
    }
  }
  if (n.digest && n.digest.length !== 32) fail('EINVAL', n, 'fs-verity digest must be 32 bytes');
}

function validateName(parent: TreeNode, nm: Buffer): void {
  let bad = nm.length === 0 || nm.length > LCFS_MAX_NAME_LENGTH;
  for (let j = 0; !bad && j < nm.length; j++) bad = nm[j] === 0x2f || nm[j] === 0;
  if (bad) fail('EINVAL', `${parent.pathString()}/${nm.toString('utf8')}`, 'invalid file name');
}

/** One inode's xattrs during the slow error search: names (escaped) and value lengths. */
interface SimXattrs {
  node: TreeNode;
  keys: string[];
  lens: number[];
  budget: number;
}

function simSet(st: SimXattrs, key: string, len: number): void {
  const j = st.keys.indexOf(key);
  if (j >= 0) {
    const old = st.lens[j]!;
    st.keys[j] = st.keys[st.keys.length - 1]!;
    st.lens[j] = st.lens[st.lens.length - 1]!;
    st.keys.pop();
    st.lens.pop();
    st.budget = st.keys.length > 0 ? st.budget - (LCFS_XATTR_ENTRY_OVERHEAD + key.length + old) : 0;
  }
  let entry = LCFS_XATTR_ENTRY_OVERHEAD + key.length + len;
  if (st.keys.length === 0) entry += LCFS_XATTR_HEADER_SIZE;
  const next = st.budget + entry;
  if (next < 0 || next > LCFS_INODE_EXTERNAL_XATTR_MAX) {
    fail('ERANGE', st.node, `setting xattr ${key} exceeds the per-inode xattr budget of ${LCFS_INODE_EXTERNAL_XATTR_MAX} bytes`);
  }
  st.keys.push(key);
  st.lens.push(len);
  st.budget = next;
}

/**
 * When the fast path fails, find the error mkcomposefs reports first: its rewrite walks the tree
 * depth-first (pre-order), and hardlinks are checked only afterwards, breadth-first. Slow, but
 * only ever run on a tree that cannot be written.
 */
function firstErrorInCOrder(root: TreeNode, version: number): unknown {
  try {
    const dirs = new Map<TreeNode, SimXattrs>();
    const stack: [TreeNode, TreeNode][] = [[root, root]];
    while (stack.length) {
      const [n, parent] = stack.pop()!;
      validateInode(n);
      const st: SimXattrs = { node: n, keys: [], lens: [], budget: 0 };
      for (const x of n.xattrs) {
        if (x.key.length === 0 || x.key.length > XATTR_NAME_MAX || x.key.includes(0)) {
          fail('ERANGE', n, `invalid xattr name ${JSON.stringify(x.key.toString('latin1'))}`);
        }
        if (x.value.length > XATTR_SIZE_MAX) fail('EINVAL', n, 'xattr value longer than 65535 bytes');
        let k = x.key.toString('latin1');
        if (n.xattrs.some((y, q) => q < st.keys.length && y.key.equals(x.key))) fail('EINVAL', n, `duplicate xattr ${k}`);
        if (k.startsWith(S_OVERLAY_PREFIX)) k = S_ESCAPE_PREFIX + k.slice(S_OVERLAY_PREFIX.length);
        st.keys.push(k);
        st.lens.push(x.value.length);
      }
      const t = n.mode & S_IFMT;
      if (VAL.ext) {
        simSet(st, OVERLAY.metacopy, n.digest ? METACOPY_SHA256_LEN : 0);
        const p = n.payload;
        const z = p ? p.indexOf(0) : -1;
        const pl = p ? (z >= 0 ? z : p.length) : 0;
        if (pl > 0) simSet(st, OVERLAY.redirect, 1 + pl);
      }
      if (t === S_IFCHR && (n.rdev & 0xffffffffn) === 0n) {
        simSet(st, OVERLAY.escapedWhiteout, 0);
        simSet(st, OVERLAY.userWhiteout, 0);
        const ps = dirs.get(parent)!;
        simSet(ps, OVERLAY.escapedWhiteouts, 0);
        simSet(ps, OVERLAY.userWhiteouts, 0);
        if (version >= 1) {
          simSet(ps, OVERLAY.escapedOpaque, 1);
          simSet(ps, OVERLAY.userOpaque, 1);
        }
      }
      if (t === S_IFDIR) {
        dirs.set(n, st);
        const kids = n.children();
        for (let k = kids.length - 1; k >= 0; k--) {
          const c = kids[k]!;
          if (c.linkTo) continue;
          validateName(n, c.name);
          stack.push([c, n]);
        }
      }
    }
    simSet(dirs.get(root)!, OVERLAY.opaque, 1);
    // lcfs_compute_tree: breadth-first, hardlinks checked after the whole queue is built
    const queue: TreeNode[] = [root];
    for (let q = 0; q < queue.length; q++) {
      const n = queue[q]!;
      if ((n.mode & S_IFMT) !== S_IFDIR && n.childCount() > 0) fail('EINVAL', n, 'only directories can have children');
      for (const c of n.children()) if (!c.linkTo) queue.push(c);
    }
    const inTree = new Set(queue);
    for (const n of queue) {
      for (const c of n.children()) {
        if (!c.linkTo) continue;
        let x: TreeNode = c;
        let steps = 0;
        while (x.linkTo) {
          x = x.linkTo;
          if (x === c || ++steps > queue.length + 1) fail('ELOOP', c, 'hardlink cycle');
        }
        if (!inTree.has(x)) fail('EINVAL', c, 'hardlink target is not in the tree');
      }
    }
  } catch (e) {
    return e;
  }
  return undefined;
}

/**
 * The writer's state, phase by phase (each phase a method: small functions keep V8's optimizing
 * compiler fast on the single run a CLI gets).
 */
class Builder {
  // stubs (§4.2 g)
  readonly rootKids: readonly TreeNode[];
  readonly stubs: TreeNode[] = [];
  readonly stubSet: Set<TreeNode>;
  rootSelinux: Buffer | undefined;
  version: number;
  // breadth-first order (§4.3)
  readonly nodes: TreeNode[];
  parentOf: number[] = [0];
  firstChild: number[] = [];
  readonly dirents: (TreeNode[] | undefined)[] = [];
  isWhiteoutParent = new Uint8Array(0);
  hasLinks = false;
  direntTotal = 0;
  N = 0;
  // per inode
  dstart = new Int32Array(0);
  dtarget = new Int32Array(0);
  mode = new Uint32Array(0);
  nlink = new Uint32Array(0);
  size = new Float64Array(0);
  isExt = new Uint8Array(0);
  chunkBits = new Uint8Array(0);
  chunkCount = new Uint16Array(0);
  // xattrs
  readonly keys = new KeyTable();
  readonly values = new ValueTable(this.keys);
  xstart = new Int32Array(0);
  xent = new Int32Array(0);
  xn = 0;
  hasAcl = false;
  minSec: bigint;
  minNsec: number;
  sharedIds: number[] = [];
  sharedSize = 0;
  // layout
  nBlocks = new Uint32Array(0);
  tail = new Uint32Array(0);
  xattrSize = new Uint32Array(0);
  nShared = new Uint8Array(0);
  compact = new Uint8Array(0);
  nid = new Float64Array(0);
  inodesEnd = 0;
  dataStart = 0;
  nDataBlocks = 0;
  /** Largest inode + xattrs + inline tail, in bytes. */
  maxSpan = 0;

  constructor(
    readonly root: TreeNode,
    minVersion: number,
    readonly maxVersion: number,
  ) {
    this.version = minVersion;
    this.nodes = [root];
    this.minSec = root.mtimeSec;
    this.minNsec = root.mtimeNsec >>> 0;
    this.rootKids = root.children();
    for (const x of root.xattrs) if (x.key.length === 16 && x.key.toString('latin1') === S_SELINUX) this.rootSelinux = x.value;
    for (let i = 0; i < 256; i++) {
      const name = Buffer.from(i.toString(16).padStart(2, '0'), 'latin1');
      if (hasName(this.rootKids, name)) continue;
      const s = new TreeNode(name, S_IFCHR | 0o644);
      s.uid = root.uid;
      s.gid = root.gid;
      s.mtimeSec = root.mtimeSec;
      s.mtimeNsec = root.mtimeNsec;
      this.stubs.push(s);
    }
    this.stubSet = new Set(this.stubs);
  }

  /** Breadth-first inode order with the directory entries libcomposefs would have. */
  order(): void {
    const nodes = this.nodes;
    const whiteoutParents: number[] = [];
    for (let q = 0; q < nodes.length; q++) {
      const n = nodes[q]!;
      this.firstChild.push(nodes.length);
      if ((n.mode & S_IFMT) !== S_IFDIR) {
        if (n.childCount() > 0) fail('EINVAL', n, 'only directories can have children');
        this.dirents.push(undefined);
        continue;
      }
      const kids = q === 0 ? mergeSorted(this.rootKids, this.stubs) : n.children();
      const arr = withDots(kids);
      this.dirents.push(arr);
      this.direntTotal += arr.length;
      if (this.enqueue(q, n, arr)) whiteoutParents.push(q);
    }
    const N = (this.N = nodes.length);
    if (N > 0xffffffff) fail('EINVAL', '/', 'too many inodes');
    if (whiteoutParents.length && this.version < 1 && this.maxVersion >= 1) this.version = 1;
    this.isWhiteoutParent = new Uint8Array(N);
    for (const q of whiteoutParents) this.isWhiteoutParent[q] = 1;
  }

  /** Queue the real children of directory q; true if one of them is a user whiteout. */
  private enqueue(q: number, n: TreeNode, arr: TreeNode[]): boolean {
    let wparent = false;
    for (let k = 0; k < arr.length; k++) {
      const c = arr[k]!;
      if (c === DOT || c === DOTDOT) continue;
      if (c.linkTo) {
        this.hasLinks = true;
        continue;
      }
      validateName(n, c.name);
      if ((c.mode & S_IFMT) === S_IFCHR && !(q === 0 && this.stubSet.has(c)) && isUserWhiteout(c)) wparent = true;
      this.nodes.push(c);
      this.parentOf.push(q);
    }
    return wparent;
  }

  /** Resolve every directory entry to an inode (hardlinks followed, ELOOP on cycles). */
  resolveEntries(): void {
    const N = this.N;
    const nodes = this.nodes;
    // inode index of every hardlink target (only those: a Map of all inodes costs memory)
    let index: Map<TreeNode, number> | undefined;
    if (this.hasLinks) {
      const targets = new Set<TreeNode>();
      for (const arr of this.dirents) {
        if (!arr) continue;
        for (const c of arr) {
          if (!c.linkTo || c === DOT || c === DOTDOT) continue;
          let x: TreeNode = c;
          for (let steps = 0; x.linkTo && steps <= N + 1; steps++) x = x.linkTo;
          targets.add(x);
        }
      }
      index = new Map();
      for (let i = 0; i < N; i++) if (targets.has(nodes[i]!)) index.set(nodes[i]!, i);
    }
    this.dstart = new Int32Array(N);
    this.dtarget = new Int32Array(this.direntTotal);
    this.mode = new Uint32Array(N);
    this.nlink = new Uint32Array(N);
    let d = 0;
    for (let q = 0; q < N; q++) {
      const arr = this.dirents[q];
      if (!arr) continue;
      this.dstart[q] = d;
      let next = this.firstChild[q]!;
      let subdirs = 0;
      for (let k = 0; k < arr.length; k++) {
        const c = arr[k]!;
        if ((c.mode & S_IFMT) === S_IFDIR) subdirs++; // a link counts by its own mode (C)
        let t: number;
        if (c === DOT) t = q;
        else if (c === DOTDOT) t = this.parentOf[q]!;
        else if (!c.linkTo) t = next++;
        else t = this.linkTarget(c, index!);
        this.dtarget[d++] = t;
      }
      this.nlink[q] = 2 + subdirs;
    }
    // no longer needed
    this.parentOf = [];
    this.firstChild = [];
  }

  private linkTarget(c: TreeNode, index: Map<TreeNode, number>): number {
    let x: TreeNode = c;
    let steps = 0;
    while (x.linkTo) {
      x = x.linkTo;
      if (x === c || ++steps > this.N + 1) fail('ELOOP', c, 'hardlink cycle');
    }
    const ti = index.get(x);
    if (ti === undefined) fail('EINVAL', c, 'hardlink target is not in the tree');
    return ti!;
  }

  // -- rewrite (§4.2 a–f) and xattr use counts (§4.4) ----------------------------------------------

  // The inode's xattrs while it is rewritten: key id, value kind/ref/length, budget.
  private readonly wKey: number[] = [];
  private readonly wKind: number[] = [];
  private readonly wRef: (Buffer | TreeNode)[] = [];
  private readonly wLen: number[] = [];
  private wn = 0;
  private budget = 0;
  private cur: TreeNode | undefined;
  private readonly escaped: number[] = [];
  private readonly K = {
    metacopy: this.keys.ofString(OVERLAY.metacopy),
    redirect: this.keys.ofString(OVERLAY.redirect),
    opaque: this.keys.ofString(OVERLAY.opaque),
    escWhiteout: this.keys.ofString(OVERLAY.escapedWhiteout),
    userWhiteout: this.keys.ofString(OVERLAY.userWhiteout),
    escWhiteouts: this.keys.ofString(OVERLAY.escapedWhiteouts),
    userWhiteouts: this.keys.ofString(OVERLAY.userWhiteouts),
    escOpaque: this.keys.ofString(OVERLAY.escapedOpaque),
    userOpaque: this.keys.ofString(OVERLAY.userOpaque),
    selinux: this.keys.ofString(S_SELINUX),
    aclAccess: this.keys.ofString(S_ACL_ACCESS).id,
    aclDefault: this.keys.ofString(S_ACL_DEFAULT).id,
  };

  /** key id → id of its escaped form (trusted.overlay.X → trusted.overlay.overlay.X), or -1. */
  private escapedOf(k: KeyInfo): number {
    let e = this.escaped[k.id];
    if (e === undefined) {
      e = k.key.startsWith(S_OVERLAY_PREFIX)
        ? this.keys.ofString(S_ESCAPE_PREFIX + k.key.slice(S_OVERLAY_PREFIX.length)).id
        : -1;
      this.escaped[k.id] = e;
    }
    return e;
  }

  /** lcfs_node_set_xattr(): replace, then charge the 32767-byte budget. */
  private setX(k: KeyInfo, kind: number, ref: Buffer | TreeNode, len: number): void {
    const { wKey, wKind, wRef, wLen } = this;
    if (len > XATTR_SIZE_MAX) fail('EINVAL', this.cur!, `xattr value of ${len} bytes`);
    for (let j = 0; j < this.wn; j++) {
      if (wKey[j] === k.id) {
        const old = wLen[j]!;
        const w = --this.wn;
        wKey[j] = wKey[w]!;
        wKind[j] = wKind[w]!;
        wRef[j] = wRef[w]!;
        wLen[j] = wLen[w]!;
        // size_t arithmetic in C: the budget may go "negative" (wrap around 2^64)
        this.budget = w > 0 ? this.budget - (LCFS_XATTR_ENTRY_OVERHEAD + k.len + old) : 0;
        break;
      }
    }
    let entry = LCFS_XATTR_ENTRY_OVERHEAD + k.len + len;
    if (this.wn === 0) entry += LCFS_XATTR_HEADER_SIZE;
    const next = this.budget + entry; // mod 2^64: a negative value is a huge size_t
    if (next < 0 || next > LCFS_INODE_EXTERNAL_XATTR_MAX) {
      fail(
        'ERANGE',
        this.cur!,
        `setting xattr ${k.key} exceeds the per-inode xattr budget of ${LCFS_INODE_EXTERNAL_XATTR_MAX} bytes`,
      );
    }
    const w = this.wn++;
    wKey[w] = k.id;
    wKind[w] = kind;
    wRef[w] = ref;
    wLen[w] = len;
    this.budget = next;
  }

  rewrite(): void {
    const N = this.N;
    this.size = new Float64Array(N);
    this.isExt = new Uint8Array(N);
    this.chunkBits = new Uint8Array(N);
    this.chunkCount = new Uint16Array(N);
    this.xstart = new Int32Array(N + 1);
    this.xent = new Int32Array(Math.max(1024, N * 2));
    const stubLimit = this.stubs.length + this.rootKids.length;
    for (let i = 0; i < N; i++) {
      const n = this.nodes[i]!;
      this.cur = n;
      this.rewriteInode(i, n, i <= stubLimit && this.stubSet.has(n));
      this.internXattrs(i);
      const sec = n.mtimeSec;
      const ns = n.mtimeNsec >>> 0;
      if (sec < this.minSec || (sec === this.minSec && ns < this.minNsec)) {
        this.minSec = sec;
        this.minNsec = ns;
      }
    }
    this.xstart[N] = this.xn;
    this.wRef.length = 0;
    const { ids, size } = this.values.assignShared();
    this.sharedIds = ids;
    this.sharedSize = size;
  }

  private rewriteInode(i: number, n: TreeNode, stub: boolean): void {
    const K = this.K;
    let m = n.mode >>> 0;
    const t = m & S_IFMT;
    // a. validate
    validateInode(n);
    let sz = VAL.size;
    if (VAL.ext) {
      this.isExt[i] = 1;
      this.chunkBits[i] = VAL.chunkBits;
      this.chunkCount[i] = VAL.chunkCount;
    }
    if (t !== S_IFDIR) this.nlink[i] = n.nlink >>> 0;

    // the xattrs of the copy
    this.wn = 0;
    this.budget = 0;
    if (stub) {
      if (this.rootSelinux) this.setX(K.selinux, V_PLAIN, this.rootSelinux, this.rootSelinux.length);
    } else {
      this.loadXattrs(n);
      // c. external file: metacopy (+ digest) and redirect
      if (this.isExt[i]) {
        if (n.digest) this.setX(K.metacopy, V_METACOPY, n, METACOPY_SHA256_LEN);
        else this.setX(K.metacopy, V_PLAIN, V_EMPTY, 0);
        const p = n.payload;
        if (p && p.length > 0) {
          const z = p.indexOf(0);
          const pl = z >= 0 ? z : p.length;
          // maybe_join_path("/", payload): a payload starting with '/' gives "//…"
          if (pl > 0) this.setX(K.redirect, V_REDIRECT, n, 1 + pl);
        }
      }
      // d. user whiteout → zero-size regular file
      if (t === S_IFCHR && (n.rdev & 0xffffffffn) === 0n) {
        sz = 0;
        m = (S_IFREG | (m & ~S_IFMT)) >>> 0;
        this.setX(K.escWhiteout, V_PLAIN, V_EMPTY, 0);
        this.setX(K.userWhiteout, V_PLAIN, V_EMPTY, 0);
      }
      // … what its whiteout children set on a directory
      if (this.isWhiteoutParent[i]) {
        this.setX(K.escWhiteouts, V_PLAIN, V_EMPTY, 0);
        this.setX(K.userWhiteouts, V_PLAIN, V_EMPTY, 0);
        if (this.version >= 1) {
          this.setX(K.escOpaque, V_PLAIN, V_X, 1);
          this.setX(K.userOpaque, V_PLAIN, V_X, 1);
        }
      }
      // f. root opaque
      if (i === 0) this.setX(K.opaque, V_PLAIN, V_Y, 1);
    }
    this.mode[i] = m;
    this.size[i] = sz;
  }

  /** The node's own xattrs, validated, with b. trusted.overlay.* escaped. */
  private loadXattrs(n: TreeNode): void {
    const { wKey, wKind, wRef, wLen } = this;
    const xs = n.xattrs;
    let wn = 0;
    for (let j = 0; j < xs.length; j++) {
      const x = xs[j]!;
      const kb = x.key;
      if (kb.length === 0 || kb.length > XATTR_NAME_MAX || kb.includes(0)) {
        fail('ERANGE', n, `invalid xattr name ${JSON.stringify(kb.toString('latin1'))}`);
      }
      if (x.value.length > XATTR_SIZE_MAX) fail('EINVAL', n, 'xattr value longer than 65535 bytes');
      const k = this.keys.ofBuffer(kb);
      for (let q = 0; q < j; q++) if (xs[q]!.key.equals(kb)) fail('EINVAL', n, `duplicate xattr ${k.key}`);
      const e = this.escapedOf(k);
      wKey[wn] = e >= 0 ? e : k.id;
      wKind[wn] = V_PLAIN;
      wRef[wn] = x.value;
      wLen[wn] = x.value.length;
      wn++;
    }
    this.wn = wn;
    // lcfs_node_clone() does not copy node->xattr_size: in the writer's copy every inode's
    // accounting starts at 0, whatever xattrs it already has (so only the writer's own additions
    // are charged, with size_t wrap-around when it replaces an existing key).
    this.budget = 0;
  }

  /** Sort the inode's final xattrs by key and count each (key, value) use. */
  private internXattrs(i: number): void {
    const { wKey, wKind, wRef, wLen } = this;
    const wn = this.wn;
    const kk = this.keys.keys;
    for (let a = 1; a < wn; a++) {
      const ka = wKey[a]!;
      const ks = kk[ka]!.key;
      const kind = wKind[a]!;
      const ref = wRef[a]!;
      const len = wLen[a]!;
      let b = a - 1;
      while (b >= 0 && kk[wKey[b]!]!.key > ks) {
        wKey[b + 1] = wKey[b]!;
        wKind[b + 1] = wKind[b]!;
        wRef[b + 1] = wRef[b]!;
        wLen[b + 1] = wLen[b]!;
        b--;
      }
      wKey[b + 1] = ka;
      wKind[b + 1] = kind;
      wRef[b + 1] = ref;
      wLen[b + 1] = len;
    }
    this.xstart[i] = this.xn;
    if (this.xn + wn > this.xent.length) {
      const g = new Int32Array(Math.max(this.xent.length * 2, this.xn + wn));
      g.set(this.xent);
      this.xent = g;
    }
    for (let j = 0; j < wn; j++) {
      const kid = wKey[j]!;
      if (kid === this.K.aclAccess || kid === this.K.aclDefault) this.hasAcl = true;
      this.xent[this.xn++] = this.values.intern(kid, wKind[j]!, wRef[j]!, wLen[j]!);
    }
  }

  // -- sizes and placement (§4.5, §4.6) ----------------------------------------------------------------

  layout(): void {
    const N = this.N;
    this.nBlocks = new Uint32Array(N);
    this.tail = new Uint32Array(N);
    this.xattrSize = new Uint32Array(N);
    this.nShared = new Uint8Array(N);
    this.compact = new Uint8Array(N);
    this.nid = new Float64Array(N);
    let pos = EROFS_INODES_START;
    for (let i = 0; i < N; i++) pos = this.place(i, pos);
    this.inodesEnd = roundUp32(pos);
    this.dataStart = Math.ceil((this.inodesEnd + this.sharedSize) / EROFS_BLKSIZ) * EROFS_BLKSIZ;
  }

  private place(i: number, pos: number): number {
    const n = this.nodes[i]!;
    const t = this.mode[i]! & S_IFMT;
    const sz = this.size[i]!;
    let nb = 0;
    let tl = 0;
    if (t === S_IFDIR) {
      const kids = this.dirents[i]!;
      let c = 0;
      for (let k = 0; k < kids.length; k++) {
        const len = DIRENT.SIZE + kids[k]!.name.length;
        if (c + len > EROFS_BLKSIZ) {
          nb++;
          c = 0;
        }
        c += len;
      }
      if (c > EROFS_BLKSIZ / 2) {
        nb++;
        c = 0;
      }
      tl = c;
    } else if (t === S_IFLNK) {
      tl = sz;
    } else if (t === S_IFREG && sz > 0) {
      if (!this.isExt[i]) {
        nb = Math.floor(sz / EROFS_BLKSIZ);
        tl = sz % EROFS_BLKSIZ;
        if (tl > EROFS_BLKSIZ / 2) {
          nb++;
          tl = 0;
        }
      } else {
        tl = 4 * this.chunkCount[i]!;
      }
    }

    let fits =
      n.mtimeSec === this.minSec &&
      n.mtimeNsec >>> 0 === this.minNsec &&
      this.nlink[i]! <= 0xffff &&
      n.uid >>> 0 <= 0xffff &&
      n.gid >>> 0 <= 0xffff;
    if (fits) fits = (t === S_IFDIR ? nb * EROFS_BLKSIZ + tl : sz) <= 0xffffffff;
    this.compact[i] = fits ? 1 : 0;
    const isz = fits ? INODE_COMPACT.SIZE : INODE_EXTENDED.SIZE;

    const vShared = this.values.shared;
    const vSize = this.values.size;
    let ns = 0;
    let local = 0;
    for (let j = this.xstart[i]!, e = this.xstart[i + 1]!; j < e; j++) {
      const id = this.xent[j]!;
      if (vShared[id]! >= 0 && ns < EROFS_XATTR_LONG_PREFIX) ns++;
      else local += vSize[id]!;
    }
    this.nShared[i] = ns;
    const xs = ns === 0 && local === 0 ? 0 : XATTR_IBODY_HEADER.SIZE + 4 * ns + local;
    if (xs > XATTR_IBODY_HEADER.SIZE + 4 * 0xfffe) fail('EINVAL', n, `xattr area of ${xs} bytes is too large`);
    this.xattrSize[i] = xs;

    pos = roundUp32(pos);
    // §4.6: keep the inline tail inside one block
    const nonTail = isz + xs;
    if (t === S_IFLNK) {
      const total = nonTail + tl;
      const cross = Math.floor(pos / EROFS_BLKSIZ) !== Math.floor((pos + total - 1) / EROFS_BLKSIZ);
      if (total >= EROFS_BLKSIZ) {
        nb++;
        tl = 0;
      }
      if (cross) pos = Math.ceil(pos / EROFS_BLKSIZ) * EROFS_BLKSIZ;
    } else {
      let rem = EROFS_BLKSIZ - ((pos + nonTail) % EROFS_BLKSIZ);
      if (rem < tl) {
        const extra = roundUp32(rem);
        rem = EROFS_BLKSIZ - ((pos + nonTail + extra) % EROFS_BLKSIZ);
        if (tl <= rem) pos += extra;
        else {
          nb++;
          tl = 0;
          pos = Math.ceil(pos / EROFS_BLKSIZ) * EROFS_BLKSIZ;
        }
      }
    }
    this.nid[i] = pos / EROFS_SLOTSIZE;
    this.nBlocks[i] = nb;
    this.tail[i] = tl;
    if (nonTail + tl > this.maxSpan) this.maxSpan = nonTail + tl;
    this.nDataBlocks += nb;
    return pos + nonTail + tl;
  }

  // -- emission of the metadata region (§6 steps 1–6) ---------------------------------------------------

  finish(): ErofsImage {
    const { N, dataStart, nDataBlocks } = this;
    const blkaddr = (this.blkaddr = new Uint32Array(N));
    let nextBlock = dataStart / EROFS_BLKSIZ;
    for (let i = 0; i < N; i++) {
      const nb = this.nBlocks[i]!;
      if (nb > 0) {
        blkaddr[i] = nextBlock;
        nextBlock += nb;
      }
    }
    if (nextBlock !== dataStart / EROFS_BLKSIZ + nDataBlocks) throw new Error('internal: block allocation');
    return new ErofsImage({
      version: this.version,
      nodes: this.nodes,
      dirents: this.dirents,
      dstart: this.dstart,
      dtarget: this.dtarget,
      mode: this.mode,
      nid: this.nid,
      nBlocks: this.nBlocks,
      blkaddr,
      isExt: this.isExt,
      metaChunks: (w, fresh, recycle) => this.metaChunks(w, fresh, recycle),
      dataStart,
      nDataBlocks,
    });
  }

  blkaddr = new Uint32Array(0);

  /**
   * The metadata region, produced through a window of `W` bytes (inodes are in nid order, so
   * everything before the next inode is final): header, superblock, inodes, shared xattr table,
   * zero padding to the first data block.
   */
  *metaChunks(window: number, fresh: (n: number) => Buffer, recycle: (b: Buffer) => void): Generator<Buffer> {
    const { N, dataStart, inodesEnd } = this;
    // the window must hold the largest inode (with xattrs and tail) or shared xattr entry
    let W = Math.max(window, this.maxSpan, EROFS_INODES_START);
    for (const id of this.sharedIds) W = Math.max(W, this.values.size[id]!);
    let win = fresh(W);
    let dv = new DataView(win.buffer, win.byteOffset, win.byteLength);
    let base = 0;
    // Emit everything before absolute offset `to` (zeros beyond the window) and restart the
    // window there.
    const flush = function* (to: number): Generator<Buffer> {
      yield win.subarray(0, Math.min(to - base, W));
      if (to - base > W) yield Buffer.alloc(to - base - W);
      recycle(win);
      win = fresh(W);
      dv = new DataView(win.buffer, win.byteOffset, win.byteLength);
      base = to;
    };
    this.writeHeader(win, dv);
    let prevEnd = EROFS_INODES_START;
    for (let i = 0; i < N; i++) {
      const p = this.nid[i]! * EROFS_SLOTSIZE;
      const end = p + (this.compact[i] ? INODE_COMPACT.SIZE : INODE_EXTENDED.SIZE) + this.xattrSize[i]! + this.tail[i]!;
      if (p < prevEnd) throw new Error('internal: inodes overlap');
      prevEnd = end;
      if (end - base > W) yield* flush(p);
      this.emitInode(win, dv, i, p - base);
    }
    if (roundUp32(prevEnd) !== inodesEnd) throw new Error('internal: inodes end');
    let sp = inodesEnd;
    for (const id of this.sharedIds) {
      const e = this.values.size[id]!;
      if (sp + e - base > W) yield* flush(sp);
      this.values.writeEntry(win, sp - base, id);
      sp += e;
    }
    if (sp !== inodesEnd + this.sharedSize) throw new Error('internal: shared xattr table size');
    while (dataStart - base > W) yield* flush(Math.min(dataStart, base + W));
    yield win.subarray(0, dataStart - base);
    recycle(win);
  }

  private writeHeader(meta: Buffer, mv: DataView): void {
    const { N, dataStart, inodesEnd, nDataBlocks } = this;
    mv.setUint32(COMPOSEFS_HEADER.magic, LCFS_EROFS_MAGIC, true);
    mv.setUint32(COMPOSEFS_HEADER.version, LCFS_EROFS_VERSION, true);
    mv.setUint32(COMPOSEFS_HEADER.flags, this.hasAcl ? LCFS_EROFS_FLAGS_HAS_ACL : 0, true);
    mv.setUint32(COMPOSEFS_HEADER.composefsVersion, this.version >>> 0, true);
    const sb = EROFS_SUPER_OFFSET;
    mv.setUint32(sb + SUPERBLOCK.magic, EROFS_SUPER_MAGIC_V1, true);
    mv.setUint32(sb + SUPERBLOCK.featureCompat, EROFS_FEATURE_COMPAT_MTIME | EROFS_FEATURE_COMPAT_XATTR_FILTER, true);
    meta[sb + SUPERBLOCK.blkszbits] = EROFS_BLKSIZ_BITS;
    mv.setUint16(sb + SUPERBLOCK.rootNid, this.nid[0]! & 0xffff, true);
    mv.setBigUint64(sb + SUPERBLOCK.inos, BigInt(N), true);
    mv.setBigUint64(sb + SUPERBLOCK.buildTime, BigInt.asUintN(64, this.minSec), true);
    mv.setUint32(sb + SUPERBLOCK.buildTimeNsec, this.minNsec, true);
    mv.setUint32(sb + SUPERBLOCK.blocks, (dataStart / EROFS_BLKSIZ + nDataBlocks) >>> 0, true);
    mv.setUint32(sb + SUPERBLOCK.metaBlkaddr, Math.floor(EROFS_INODES_START / EROFS_BLKSIZ), true);
    mv.setUint32(sb + SUPERBLOCK.xattrBlkaddr, Math.floor(inodesEnd / EROFS_BLKSIZ) >>> 0, true);
  }

  /** Inode i (header, xattrs, inline tail) at meta[p]. */
  private emitInode(meta: Buffer, mv: DataView, i: number, p: number): void {
    const blk = this.blkaddr[i]!;
    const n = this.nodes[i]!;
    const m = this.mode[i]!;
    const t = m & S_IFMT;
    const nb = this.nBlocks[i]!;
    const tl = this.tail[i]!;
    const xs = this.xattrSize[i]!;
    const ext = this.isExt[i]!;
    const xattrIcount = xs === 0 ? 0 : (xs - XATTR_IBODY_HEADER.SIZE) / 4 + 1;
    let layout = tl > 0 ? EROFS_INODE_FLAT_INLINE : EROFS_INODE_FLAT_PLAIN;
    let isize: number;
    if (t === S_IFDIR) isize = nb * EROFS_BLKSIZ + tl;
    else if (t === S_IFREG) {
      isize = this.size[i]!;
      if (ext) layout = EROFS_INODE_CHUNK_BASED;
    } else if (t === S_IFLNK) isize = nb === 0 ? tl : this.size[i]!;
    else isize = 0;
    let u = 0;
    if (t === S_IFDIR || t === S_IFREG || t === S_IFLNK) u = blk;
    else if (t === S_IFCHR || t === S_IFBLK) u = Number(n.rdev & 0xffffffffn);
    if (this.compact[i]) {
      mv.setUint16(p + INODE_COMPACT.format, layout << EROFS_I_DATALAYOUT_BIT, true);
      mv.setUint16(p + INODE_COMPACT.xattrIcount, xattrIcount, true);
      mv.setUint16(p + INODE_COMPACT.mode, m & 0xffff, true);
      mv.setUint16(p + INODE_COMPACT.nlink, this.nlink[i]! & 0xffff, true);
      mv.setUint32(p + INODE_COMPACT.size, isize >>> 0, true);
      mv.setUint32(p + INODE_COMPACT.u, u >>> 0, true);
      // chunk info overwrites the low half of raw_blkaddr (the C union)
      if (ext) mv.setUint16(p + INODE_COMPACT.u, this.chunkBits[i]! - EROFS_BLKSIZ_BITS, true);
      mv.setUint32(p + INODE_COMPACT.ino, i, true);
      mv.setUint16(p + INODE_COMPACT.uid, n.uid & 0xffff, true);
      mv.setUint16(p + INODE_COMPACT.gid, n.gid & 0xffff, true);
      p += INODE_COMPACT.SIZE;
    } else {
      mv.setUint16(p + INODE_EXTENDED.format, (layout << EROFS_I_DATALAYOUT_BIT) | 1, true);
      mv.setUint16(p + INODE_EXTENDED.xattrIcount, xattrIcount, true);
      mv.setUint16(p + INODE_EXTENDED.mode, m & 0xffff, true);
      if (isize < 0x20000000000000) {
        mv.setUint32(p + INODE_EXTENDED.size, isize >>> 0, true);
        mv.setUint32(p + INODE_EXTENDED.size + 4, Math.floor(isize / 0x100000000) >>> 0, true);
      } else {
        // beyond 2^53 (an external file whose chunk count wrapped to ≤ 1024): exact u64
        mv.setBigUint64(p + INODE_EXTENDED.size, BigInt.asUintN(64, n.size), true);
      }
      mv.setUint32(p + INODE_EXTENDED.u, u >>> 0, true);
      if (ext) mv.setUint16(p + INODE_EXTENDED.u, this.chunkBits[i]! - EROFS_BLKSIZ_BITS, true);
      mv.setUint32(p + INODE_EXTENDED.ino, i, true);
      mv.setUint32(p + INODE_EXTENDED.uid, n.uid >>> 0, true);
      mv.setUint32(p + INODE_EXTENDED.gid, n.gid >>> 0, true);
      mv.setBigUint64(p + INODE_EXTENDED.mtime, BigInt.asUintN(64, n.mtimeSec), true);
      mv.setUint32(p + INODE_EXTENDED.mtimeNsec, n.mtimeNsec >>> 0, true);
      mv.setUint32(p + INODE_EXTENDED.nlink, this.nlink[i]!, true);
      p += INODE_EXTENDED.SIZE;
    }
    if (xs > 0) p = this.emitXattrs(meta, mv, i, p, xs);
    if (tl > 0) {
      if (t === S_IFDIR) {
        const kids = this.dirents[i]!;
        let c = 0;
        let first = 0;
        for (let k = 0; k < kids.length; k++) {
          const len = DIRENT.SIZE + kids[k]!.name.length;
          if (c + len > EROFS_BLKSIZ) {
            c = 0;
            first = k;
          }
          c += len;
        }
        writeDirChunk(meta, mv, p, kids, first, kids.length, this.dtarget, this.dstart[i]!, this.nid, this.mode);
      } else if (t === S_IFLNK) {
        n.payload!.copy(meta, p);
      } else if (t === S_IFREG) {
        if (!ext) n.content!.copy(meta, p, n.content!.length - tl);
        else meta.fill(0xff, p, p + tl);
      }
    }
  }

  /** Xattr area: header (name filter), shared ids, local entries — both in key order. */
  private emitXattrs(meta: Buffer, mv: DataView, i: number, p: number, xs: number): number {
    const start = p;
    const x0 = this.xstart[i]!;
    const x1 = this.xstart[i + 1]!;
    const xent = this.xent;
    const vShared = this.values.shared;
    const vKey = this.values.key;
    const keys = this.keys.keys;
    let mask = 0;
    for (let j = x0; j < x1; j++) mask |= 1 << keys[vKey[xent[j]!]!]!.bit;
    mv.setUint32(p + XATTR_IBODY_HEADER.nameFilter, (EROFS_XATTR_FILTER_DEFAULT & ~mask) >>> 0, true);
    meta[p + XATTR_IBODY_HEADER.sharedCount] = this.nShared[i]!;
    p += XATTR_IBODY_HEADER.SIZE;
    const sharedBase = this.inodesEnd % EROFS_BLKSIZ;
    let taken = 0;
    for (let j = x0; j < x1; j++) {
      const off = vShared[xent[j]!]!;
      if (off >= 0 && taken < EROFS_XATTR_LONG_PREFIX) {
        mv.setUint32(p, ((sharedBase + off) / 4) >>> 0, true);
        p += 4;
        taken++;
      }
    }
    taken = 0;
    for (let j = x0; j < x1; j++) {
      const id = xent[j]!;
      if (vShared[id]! >= 0 && taken < EROFS_XATTR_LONG_PREFIX) {
        taken++;
        continue;
      }
      p = this.values.writeEntry(meta, p, id);
    }
    if (p - start !== xs) throw new Error(`internal: xattr size of ${this.nodes[i]!.pathString()}`);
    return p;
  }
}

// ---------------------------------------------------------------------------------------------
// Output helpers

/** The image as one Buffer. */
export function writeErofsToBuffer(root: TreeNode, opts: ErofsWriteOptions = {}): Buffer {
  return buildErofs(root, opts).toBuffer();
}

/** Hook called with every chunk written (e.g. to compute the fs-verity digest on the way). */
export type ChunkObserver = (chunk: Buffer) => void;

/**
 * Write the image to `path` atomically: a temporary file in the same directory, renamed over
 * `path` once complete. On any error the temporary file is removed and `path` is untouched.
 */
export async function writeErofsFile(
  root: TreeNode,
  path: string,
  opts: ErofsWriteOptions = {},
  observe?: ChunkObserver,
): Promise<ErofsImage> {
  const image = buildErofs(root, opts);
  await writeImageFile(image, path, observe);
  return image;
}

export async function writeImageFile(image: ErofsImage, path: string, observe?: ChunkObserver): Promise<void> {
  await checkImageOutput(path);
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
  const fh = await open(tmp, 'wx', 0o644).catch((e: unknown) => {
    throw cannotWriteImage(path, e);
  });
  const unregister = registerTempPath(tmp); // interrupted (CLI signal handlers): no temp left
  let ok = false;
  try {
    // each chunk is written before the next is produced: recycle the buffers
    for (const chunk of image.chunks(256, true)) {
      observe?.(chunk);
      let off = 0;
      while (off < chunk.length) {
        const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
        off += bytesWritten;
      }
    }
    await fh.close();
    await rename(tmp, path);
    ok = true;
  } catch (e) {
    throw cannotWriteImage(path, e);
  } finally {
    if (!ok) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
    }
    unregister();
  }
}

/**
 * An I/O failure writing image `path`, named by that path (not the temporary file beside it);
 * other errors pass through.
 */
function cannotWriteImage(path: string, e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (e instanceof OstreeOciError || typeof code !== 'string') return e;
  const why: Record<string, string> = {
    EISDIR: 'it is a directory',
    ENOENT: `directory ${dirname(path)} does not exist`,
    ENOTDIR: `a parent of it is not a directory`,
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on the device',
  };
  return new OstreeOciError(`cannot write image ${path}: ${why[code] ?? code}`, { path, code });
}

/**
 * Refuse an image destination that cannot be written, before the work of building the image: a
 * directory, or a path whose directory does not exist.
 */
export async function checkImageOutput(path: string): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (st?.isDirectory()) throw cannotWriteImage(path, Object.assign(new Error('EISDIR'), { code: 'EISDIR' }));
  const dir = await stat(dirname(path)).catch((e: unknown) => {
    throw cannotWriteImage(path, e);
  });
  if (!dir.isDirectory()) throw cannotWriteImage(path, Object.assign(new Error('ENOTDIR'), { code: 'ENOTDIR' }));
}

/** Stream the image to a Writable (e.g. stdout), respecting back-pressure. */
export async function writeImageStream(image: ErofsImage, out: Writable, observe?: ChunkObserver): Promise<void> {
  await writeChunks(image.chunks(), out, observe);
}
