/**
 * EROFS / composefs image reader: turns an image written by mkcomposefs (or by our writer) back
 * into the `TreeNode` tree, with the semantics of libcomposefs' `lcfs_load_node_from_image`
 * (what `composefs-info dump` prints). Spec: composefs-format.md §5, §6, §8.
 *
 * What the reader does, like composefs-info:
 * - compact inodes take their mtime from the superblock build time; extended ones carry it;
 * - `trusted.overlay.redirect` on a regular file → `payload` (one leading `/` stripped);
 *   `trusted.overlay.metacopy` of 36 bytes on a regular file → `digest`; both are dropped as xattrs;
 * - `trusted.overlay.overlay.whiteout` on a regular file turns it back into a char device 0/0;
 *   `trusted.overlay.overlay.whiteouts`, `user.overlay.whiteout` and `user.overlay.whiteouts` are
 *   dropped; any other `trusted.overlay.overlay.X` is unescaped to `trusted.overlay.X`; any other
 *   `trusted.overlay.*` (writer-internal, e.g. the root's `opaque=y`) is dropped. (So a format-1
 *   image's `trusted.overlay.overlay.opaque=x` marker reads back as `trusted.overlay.opaque=x`,
 *   exactly as composefs-info shows it.)
 * - xattrs are listed in image order: the inode's inline entries first, then its shared ones;
 * - `.`/`..` dirents are skipped, and char devices 0/0 (the `00`..`ff` overlay whiteout stubs)
 *   are left out;
 * - the second and later dirents that point to an already seen inode become hardlink nodes
 *   (`linkTo` = the first node, mode 0 like a dumpfile hardlink line), in depth-first order.
 *
 * Deliberate differences from the C reader, all on inputs mkcomposefs never writes or on C bugs:
 * - C over-reads 2 bytes past a `trusted.overlay.redirect` value whose length is a multiple of 4
 *   (`value_size++` instead of `--` in lcfs_build_node_erofs_xattr) and may append them to the
 *   payload; we return the stored value only.
 * - Hostile images: every offset is bounds-checked, directory data blocks may not be shared
 *   (total directory + inline data read is capped at the image size, which also bounds the work),
 *   names containing `/` or equal to `.`/`..` after NUL truncation, empty directories (size 0) and
 *   inline tails of size 0 are rejected with an `ErofsFormatError`; C would read out of bounds.
 *   A dirent to a directory already on the path becomes a hardlink (as in C), so cycles cannot
 *   loop; the directory depth is capped (default 4096) and the walk is iterative (no recursion).
 */
import { closeSync, openSync, readSync, fstatSync, statSync } from 'node:fs';
import { OstreeOciError } from '../../errors.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, TreeNode, type Xattr } from '../../tree/model.js';
import {
  DIRENT,
  EROFS_BLKSIZ,
  EROFS_BLKSIZ_BITS,
  EROFS_INODE_CHUNK_BASED,
  EROFS_INODE_FLAT_INLINE,
  EROFS_INODE_FLAT_PLAIN,
  EROFS_INODE_LAYOUT_COMPACT,
  EROFS_I_DATALAYOUT_BIT,
  EROFS_I_DATALAYOUT_MASK,
  EROFS_I_VERSION_BIT,
  EROFS_I_VERSION_MASK,
  EROFS_SLOTSIZE,
  EROFS_SUPER_MAGIC_V1,
  EROFS_SUPER_OFFSET,
  EROFS_SUPER_SIZE,
  INODE_COMPACT,
  INODE_EXTENDED,
  LCFS_EROFS_MAGIC,
  LCFS_EROFS_VERSION,
  LCFS_INLINE_CONTENT_MAX,
  LCFS_MAX_NAME_LENGTH,
  METACOPY_SHA256_LEN,
  OVERLAY,
  PATH_MAX,
  SUPERBLOCK,
  COMPOSEFS_HEADER,
  XATTR_ENTRY,
  XATTR_IBODY_HEADER,
  XATTR_NAME_MAX,
  XATTR_PREFIXES,
  XATTR_SIZE_MAX,
  xattrIbodySize,
} from './format.js';

// On-disk constants and layouts shared with the writer (composefs-format.md §1, §5).
const BLK = EROFS_BLKSIZ;
const ISLOT = EROFS_SLOTSIZE;
const DIRENT_SIZE = DIRENT.SIZE;
const XATTR_HEADER_SIZE = XATTR_IBODY_HEADER.SIZE;
const XATTR_ENTRY_SIZE = XATTR_ENTRY.SIZE;
const DIGEST_SIZE = METACOPY_SHA256_LEN - 4;
const XATTR_PREFIX_BYTES = XATTR_PREFIXES.map((p) => Buffer.from(p));

const OVERLAY_PREFIX = Buffer.from(OVERLAY.prefix);
const OVERLAY_ESCAPE_PREFIX = Buffer.from(OVERLAY.escapePrefix);
const TRUSTED_PREFIX_LEN = 'trusted.'.length;
const X_REDIRECT = Buffer.from(OVERLAY.redirect);
const X_METACOPY = Buffer.from(OVERLAY.metacopy);
const X_ESC_WHITEOUT = Buffer.from(OVERLAY.escapedWhiteout);
const X_DROPPED = [OVERLAY.escapedWhiteouts, OVERLAY.userWhiteout, OVERLAY.userWhiteouts].map((k) => Buffer.from(k));

/** An EROFS/composefs image that is malformed; the message names the nid/offset/field. */
export class ErofsFormatError extends OstreeOciError {}

/** composefs header + EROFS superblock fields. */
export interface ErofsImageInfo {
  /** composefs header `version` (always 1). */
  headerVersion: number;
  /** composefs header flags (bit 0: has ACL xattrs). */
  flags: number;
  /** composefs format version 0 or 1 (`composefs_version`). */
  composefsVersion: number;
  featureCompat: number;
  featureIncompat: number;
  blkszbits: number;
  rootNid: number;
  inos: bigint;
  /** Superblock build time = mtime of compact inodes (seconds signed). */
  buildTimeSec: bigint;
  buildTimeNsec: number;
  blocks: number;
  metaBlkaddr: number;
  xattrBlkaddr: number;
  imageSize: number;
}

export interface ReadErofsOptions {
  /** Maximum directory nesting below the root (default 4096). */
  maxDepth?: number;
}

// ---------------------------------------------------------------------------------------------
// Byte sources: a Buffer, or a file read on demand through a small page cache.

interface ByteSource {
  readonly size: number;
  /** `len` bytes at `off` (caller has bounds-checked). The result must not be modified. */
  view(off: number, len: number): Buffer;
}

class BufferSource implements ByteSource {
  constructor(private readonly buf: Buffer) {}
  get size(): number {
    return this.buf.length;
  }
  view(off: number, len: number): Buffer {
    return this.buf.subarray(off, off + len);
  }
}

const PAGE = 64 * 1024;
const MAX_PAGES = 256;

class FdSource implements ByteSource {
  readonly size: number;
  private readonly pages = new Map<number, Buffer>();
  constructor(
    private readonly fd: number,
    private readonly path: string,
  ) {
    this.size = fstatSync(fd).size;
  }
  private readAt(off: number, len: number): Buffer {
    const out = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const n = readSync(this.fd, out, got, len - got, off + got);
      if (n === 0) throw new ErofsFormatError(`${this.path}: unexpected end of file at offset ${off + got}`);
      got += n;
    }
    return out;
  }
  view(off: number, len: number): Buffer {
    const p = Math.floor(off / PAGE);
    if (off + len > (p + 1) * PAGE) return this.readAt(off, len);
    let page = this.pages.get(p);
    if (page) {
      this.pages.delete(p); // LRU: re-insert as newest
    } else {
      const start = p * PAGE;
      page = this.readAt(start, Math.min(PAGE, this.size - start));
      if (this.pages.size >= MAX_PAGES) this.pages.delete(this.pages.keys().next().value!);
    }
    this.pages.set(p, page);
    const o = off - p * PAGE;
    return page.subarray(o, o + len);
  }
}

// ---------------------------------------------------------------------------------------------

interface RawDirent {
  name: Buffer;
  nid: bigint;
}

interface Frame {
  dir: TreeNode;
  nid: number;
  entries: RawDirent[];
  next: number;
}

const WHITEOUT = Symbol('whiteout');

/** Per-inode xattr accounting (libcomposefs' 65535-byte budget) and key → position index. */
interface XattrBudget {
  used: number;
  index: Map<string, number>;
}

const hasPrefix = (b: Buffer, p: Buffer): boolean => b.length >= p.length && b.subarray(0, p.length).equals(p);

/** Bytes up to (not including) the first NUL: C-string semantics. */
function cstr(b: Buffer): Buffer {
  const z = b.indexOf(0);
  return z < 0 ? b : b.subarray(0, z);
}

function readHeader(src: ByteSource): ErofsImageInfo {
  const size = src.size;
  if (size < BLK) {
    throw new ErofsFormatError(`EROFS image too small: ${size} bytes (at least one 4096-byte block needed)`, {
      field: 'size',
      size,
    });
  }
  const h = src.view(0, COMPOSEFS_HEADER.SIZE);
  const magic = h.readUInt32LE(COMPOSEFS_HEADER.magic);
  if (magic !== LCFS_EROFS_MAGIC) {
    throw new ErofsFormatError(
      `not a composefs image: header magic at offset 0 is 0x${magic.toString(16)}, expected 0x${LCFS_EROFS_MAGIC.toString(16)}`,
      { field: 'magic', offset: 0 },
    );
  }
  const headerVersion = h.readUInt32LE(COMPOSEFS_HEADER.version);
  if (headerVersion !== LCFS_EROFS_VERSION) {
    throw new ErofsFormatError(`unsupported composefs header version ${headerVersion} at offset ${COMPOSEFS_HEADER.version} (expected ${LCFS_EROFS_VERSION})`, {
      field: 'version',
      offset: COMPOSEFS_HEADER.version,
    });
  }
  const sb = src.view(EROFS_SUPER_OFFSET, EROFS_SUPER_SIZE);
  const sbMagic = sb.readUInt32LE(SUPERBLOCK.magic);
  if (sbMagic !== EROFS_SUPER_MAGIC_V1) {
    throw new ErofsFormatError(
      `bad EROFS superblock magic 0x${sbMagic.toString(16)} at offset ${EROFS_SUPER_OFFSET} (expected 0x${EROFS_SUPER_MAGIC_V1.toString(16)})`,
      { field: 'magic', offset: EROFS_SUPER_OFFSET },
    );
  }
  const blkszbits = sb[SUPERBLOCK.blkszbits]!;
  if (blkszbits !== EROFS_BLKSIZ_BITS) {
    throw new ErofsFormatError(`unsupported EROFS block size 2^${blkszbits} (superblock blkszbits at offset ${EROFS_SUPER_OFFSET + SUPERBLOCK.blkszbits})`, {
      field: 'blkszbits',
      offset: EROFS_SUPER_OFFSET + SUPERBLOCK.blkszbits,
    });
  }
  const metaBlkaddr = sb.readUInt32LE(SUPERBLOCK.metaBlkaddr);
  const xattrBlkaddr = sb.readUInt32LE(SUPERBLOCK.xattrBlkaddr);
  if (metaBlkaddr * BLK >= size) {
    throw new ErofsFormatError(`superblock meta_blkaddr ${metaBlkaddr} is beyond the image (${size} bytes)`, {
      field: 'meta_blkaddr',
      offset: EROFS_SUPER_OFFSET + SUPERBLOCK.metaBlkaddr,
    });
  }
  if (xattrBlkaddr * BLK >= size) {
    throw new ErofsFormatError(`superblock xattr_blkaddr ${xattrBlkaddr} is beyond the image (${size} bytes)`, {
      field: 'xattr_blkaddr',
      offset: EROFS_SUPER_OFFSET + SUPERBLOCK.xattrBlkaddr,
    });
  }
  return {
    headerVersion,
    flags: h.readUInt32LE(COMPOSEFS_HEADER.flags),
    composefsVersion: h.readUInt32LE(COMPOSEFS_HEADER.composefsVersion),
    featureCompat: sb.readUInt32LE(SUPERBLOCK.featureCompat),
    featureIncompat: sb.readUInt32LE(SUPERBLOCK.featureIncompat),
    blkszbits,
    rootNid: sb.readUInt16LE(SUPERBLOCK.rootNid),
    inos: sb.readBigUInt64LE(SUPERBLOCK.inos),
    buildTimeSec: BigInt.asIntN(64, sb.readBigUInt64LE(SUPERBLOCK.buildTime)),
    buildTimeNsec: sb.readUInt32LE(SUPERBLOCK.buildTimeNsec),
    blocks: sb.readUInt32LE(SUPERBLOCK.blocks),
    metaBlkaddr,
    xattrBlkaddr,
    imageSize: size,
  };
}

class ImageReader {
  private readonly size: number;
  private readonly metaStart: number;
  private readonly xattrStart: number;
  private readonly maxNid: bigint;
  private readonly byNid = new Map<number, TreeNode | typeof WHITEOUT>();
  private readonly sharedCache = new Map<number, Xattr>();
  /**
   * Bytes still allowed to be consumed (starts at the image size): inode headers, inline xattr
   * areas, directory data, inline content and symlink targets. These are disjoint in a valid image,
   * so the total work is linear in the image size even when a hostile image makes them overlap.
   */
  private dataBudget: number;
  private readonly maxDepth: number;

  constructor(
    private readonly src: ByteSource,
    readonly info: ErofsImageInfo,
    opts: ReadErofsOptions,
  ) {
    this.size = src.size;
    this.metaStart = info.metaBlkaddr * BLK;
    this.xattrStart = info.xattrBlkaddr * BLK;
    this.maxNid = BigInt(Math.floor((this.size - this.metaStart - ISLOT) / ISLOT));
    this.dataBudget = this.size;
    this.maxDepth = opts.maxDepth ?? 4096;
  }

  private bytes(off: number, len: number, what: string, nid?: number): Buffer {
    if (!Number.isSafeInteger(off) || off < 0 || len < 0 || off + len > this.size) {
      throw new ErofsFormatError(
        `${nid !== undefined ? `inode nid ${nid}: ` : ''}${what} at offset ${off} (+${len} bytes) is beyond the image (${this.size} bytes)`,
        { nid, offset: off, length: len, field: what },
      );
    }
    return this.src.view(off, len);
  }

  private spend(len: number, what: string, nid: number): void {
    if (len > this.dataBudget) {
      throw new ErofsFormatError(
        `inode nid ${nid}: ${what} of ${len} bytes exceeds the data left in the image (blocks shared between inodes?)`,
        { nid, field: what },
      );
    }
    this.dataBudget -= len;
  }

  read(): TreeNode {
    const rootNid = this.info.rootNid;
    const root = this.loadInode(rootNid, '/');
    if (root === WHITEOUT) {
      throw new ErofsFormatError(`root inode nid ${rootNid} is a whiteout (char device 0/0)`, { nid: rootNid });
    }
    const stack: Frame[] = [];
    if (root.node.isDir) stack.push({ dir: root.node, nid: rootNid, entries: root.entries, next: 0 });
    while (stack.length) {
      const f = stack[stack.length - 1]!;
      if (f.next >= f.entries.length) {
        stack.pop();
        continue;
      }
      const ent = f.entries[f.next++]!;
      if (ent.nid > this.maxNid) {
        throw new ErofsFormatError(
          `directory nid ${f.nid}: dirent "${ent.name.toString('latin1')}" points to nid ${ent.nid} beyond the image`,
          { nid: f.nid, field: 'dirent.nid' },
        );
      }
      const nid = Number(ent.nid);
      const name = cstr(ent.name);
      this.checkName(name, f.nid);
      let child: TreeNode;
      const seen = this.byNid.get(nid);
      if (seen === WHITEOUT) continue;
      if (seen) {
        child = new TreeNode(Buffer.from(name));
        child.linkTo = seen;
      } else {
        const loaded = this.loadInode(nid, name.toString('latin1'));
        if (loaded === WHITEOUT) continue;
        child = loaded.node;
        child.name = Buffer.from(name);
        if (child.isDir) {
          // stack holds the root and the directories above this one: its depth is stack.length.
          if (stack.length > this.maxDepth) {
            throw new ErofsFormatError(`directory nid ${nid}: nesting deeper than ${this.maxDepth} levels`, {
              nid,
              field: 'depth',
            });
          }
          stack.push({ dir: child, nid, entries: loaded.entries, next: 0 });
        }
      }
      if (!f.dir.addChild(child)) {
        throw new ErofsFormatError(
          `directory nid ${f.nid}: duplicate entry "${name.toString('latin1')}"`,
          { nid: f.nid, field: 'dirent.name' },
        );
      }
    }
    return root.node;
  }

  private checkName(name: Buffer, dirNid: number): void {
    let why: string | undefined;
    if (name.length === 0) why = 'empty name';
    else if (name.length > LCFS_MAX_NAME_LENGTH) why = `name longer than ${LCFS_MAX_NAME_LENGTH} bytes`;
    else if (name.includes(0x2f)) why = 'name contains "/"';
    else if ((name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)) {
      why = 'name "." or ".." after NUL truncation';
    }
    if (why) {
      throw new ErofsFormatError(`directory nid ${dirNid}: invalid dirent name "${name.toString('latin1')}": ${why}`, {
        nid: dirNid,
        field: 'dirent.name',
      });
    }
  }

  /** Parse one inode into a fresh node (and its raw dirents for directories). */
  private loadInode(nid: number, label: string): { node: TreeNode; entries: RawDirent[] } | typeof WHITEOUT {
    const off = this.metaStart + nid * ISLOT;
    const fmt = this.bytes(off, 2, 'inode i_format', nid).readUInt16LE(INODE_COMPACT.format);
    const compact = ((fmt >> EROFS_I_VERSION_BIT) & EROFS_I_VERSION_MASK) === EROFS_INODE_LAYOUT_COMPACT;
    const layout = (fmt >> EROFS_I_DATALAYOUT_BIT) & EROFS_I_DATALAYOUT_MASK;
    const isize = compact ? INODE_COMPACT.SIZE : INODE_EXTENDED.SIZE;
    const ino = this.bytes(off, isize, compact ? 'compact inode' : 'extended inode', nid);
    const node = new TreeNode();
    let size: bigint;
    let iu: number;
    const xicount = ino.readUInt16LE(INODE_COMPACT.xattrIcount);
    node.mode = ino.readUInt16LE(INODE_COMPACT.mode);
    if (compact) {
      node.nlink = ino.readUInt16LE(INODE_COMPACT.nlink);
      size = BigInt(ino.readUInt32LE(INODE_COMPACT.size));
      iu = ino.readUInt32LE(INODE_COMPACT.u);
      node.uid = ino.readUInt16LE(INODE_COMPACT.uid);
      node.gid = ino.readUInt16LE(INODE_COMPACT.gid);
      node.mtimeSec = this.info.buildTimeSec;
      node.mtimeNsec = this.info.buildTimeNsec;
    } else {
      size = ino.readBigUInt64LE(INODE_EXTENDED.size);
      iu = ino.readUInt32LE(INODE_EXTENDED.u);
      node.uid = ino.readUInt32LE(INODE_EXTENDED.uid);
      node.gid = ino.readUInt32LE(INODE_EXTENDED.gid);
      node.mtimeSec = BigInt.asIntN(64, ino.readBigUInt64LE(INODE_EXTENDED.mtime));
      node.mtimeNsec = ino.readUInt32LE(INODE_EXTENDED.mtimeNsec);
      node.nlink = ino.readUInt32LE(INODE_EXTENDED.nlink);
    }
    node.size = size;
    const type = node.mode & S_IFMT;
    if (type === S_IFCHR || type === S_IFBLK) node.rdev = BigInt(iu);
    if (type === S_IFCHR && iu === 0) {
      this.byNid.set(nid, WHITEOUT);
      return WHITEOUT;
    }
    this.byNid.set(nid, node);

    const xattrSize = xattrIbodySize(xicount);
    // inode headers and inline xattr areas of a valid image are disjoint: count them against the
    // image size too, so overlapping inodes of a hostile image cannot multiply the work
    this.spend(isize + xattrSize, 'inode with xattr area', nid);
    const tailOff = off + isize + xattrSize;
    const tailpacked = layout === EROFS_INODE_FLAT_INLINE;
    let entries: RawDirent[] = [];

    if (type === S_IFDIR) {
      entries = this.readDir(nid, size, iu, tailpacked, tailOff);
    } else if (type === S_IFLNK) {
      if (size >= BigInt(PATH_MAX)) {
        throw new ErofsFormatError(`symlink nid ${nid} (${label}): target size ${size} ≥ ${PATH_MAX}`, {
          nid,
          field: 'i_size',
        });
      }
      const n = Number(size);
      this.spend(n, 'symlink target', nid);
      const raw = tailpacked
        ? this.bytes(tailOff, n, 'inline symlink target', nid)
        : this.bytes(iu * BLK, n, 'symlink target block', nid);
      const target = cstr(raw);
      if (target.length === 0) {
        throw new ErofsFormatError(`symlink nid ${nid} (${label}): empty target`, { nid, field: 'symlink target' });
      }
      node.payload = Buffer.from(target);
      node.size = BigInt(target.length);
    } else if (type === S_IFREG && size !== 0n && (layout === EROFS_INODE_FLAT_PLAIN || layout === EROFS_INODE_FLAT_INLINE)) {
      if (size > BigInt(Math.min(LCFS_INLINE_CONTENT_MAX, this.size))) {
        throw new ErofsFormatError(
          `regular file nid ${nid} (${label}): inline content of ${size} bytes exceeds ${LCFS_INLINE_CONTENT_MAX}`,
          { nid, field: 'i_size' },
        );
      }
      const n = Number(size);
      this.spend(n, 'inline content', nid);
      const tail = tailpacked ? n % BLK : 0;
      if (tailpacked && tail === 0) {
        throw new ErofsFormatError(`regular file nid ${nid} (${label}): FLAT_INLINE layout with an empty tail`, {
          nid,
          field: 'i_format',
        });
      }
      const oob = n - tail;
      const parts: Buffer[] = [];
      if (oob > 0) parts.push(this.bytes(iu * BLK, oob, 'file content block', nid));
      if (tail > 0) parts.push(this.bytes(tailOff, tail, 'inline file content', nid));
      node.content = Buffer.concat(parts);
    } else if (type === S_IFREG && size !== 0n && layout !== EROFS_INODE_CHUNK_BASED) {
      throw new ErofsFormatError(
        `regular file nid ${nid} (${label}): unsupported data layout ${layout} (composefs uses flat or chunk-based)`,
        { nid, field: 'i_format' },
      );
    }

    if (xicount > 0) this.readXattrs(node, nid, off + isize, xattrSize);
    return { node, entries };
  }

  private readDir(nid: number, size: bigint, blkaddr: number, tailpacked: boolean, tailOff: number): RawDirent[] {
    if (size === 0n) throw new ErofsFormatError(`directory nid ${nid}: size 0`, { nid, field: 'i_size' });
    if (size > BigInt(this.dataBudget)) {
      throw new ErofsFormatError(
        `directory nid ${nid}: size ${size} exceeds the data left in the image (blocks shared between inodes?)`,
        { nid, field: 'i_size' },
      );
    }
    const n = Number(size);
    this.spend(n, 'directory data', nid);
    const tail = tailpacked ? n % BLK : 0;
    if (tailpacked && tail === 0) {
      throw new ErofsFormatError(`directory nid ${nid}: FLAT_INLINE layout with an empty tail`, { nid, field: 'i_format' });
    }
    const nBlocks = Math.ceil(n / BLK);
    const lastOob = tailpacked ? nBlocks - 1 : nBlocks;
    const out: RawDirent[] = [];
    for (let b = 0; b < lastOob; b++) {
      let blockSize = BLK;
      if (!tailpacked && b + 1 === lastOob) blockSize = n % BLK || BLK;
      const off = (blkaddr + b) * BLK;
      this.readDirBlock(nid, this.bytes(off, blockSize, `directory block ${b}`, nid), off, out);
    }
    if (tailpacked) this.readDirBlock(nid, this.bytes(tailOff, tail, 'inline directory tail', nid), tailOff, out);
    return out;
  }

  private readDirBlock(nid: number, block: Buffer, blockOff: number, out: RawDirent[]): void {
    const fail = (msg: string, field: string): never => {
      throw new ErofsFormatError(`directory nid ${nid}: ${msg} (block at offset ${blockOff})`, {
        nid,
        offset: blockOff,
        field,
      });
    };
    if (block.length < DIRENT_SIZE) fail(`directory block of ${block.length} bytes holds no dirent`, 'i_size');
    const first = block.readUInt16LE(DIRENT.nameoff);
    if (first % DIRENT_SIZE !== 0) fail(`first nameoff ${first} is not a multiple of 12`, 'nameoff');
    const count = first / DIRENT_SIZE;
    if (first > block.length) fail(`${count} dirents do not fit in ${block.length} bytes`, 'nameoff');
    for (let i = 0; i < count; i++) {
      const nameoff = block.readUInt16LE(i * DIRENT_SIZE + DIRENT.nameoff);
      if (nameoff > block.length) fail(`dirent ${i} nameoff ${nameoff} beyond the block`, 'nameoff');
      let len: number;
      if (i + 1 < count) {
        len = (block.readUInt16LE((i + 1) * DIRENT_SIZE + DIRENT.nameoff) - nameoff) & 0xffff;
      } else {
        const z = block.indexOf(0, nameoff);
        len = (z < 0 ? block.length : z) - nameoff;
      }
      if (nameoff + len > block.length) fail(`dirent ${i} name (offset ${nameoff}, ${len} bytes) beyond the block`, 'nameoff');
      const raw = block.subarray(nameoff, nameoff + len);
      if ((len === 1 && raw[0] === 0x2e) || (len === 2 && raw[0] === 0x2e && raw[1] === 0x2e)) continue;
      out.push({ name: Buffer.from(raw), nid: block.readBigUInt64LE(i * DIRENT_SIZE + DIRENT.nid) });
    }
  }

  private readXattrs(node: TreeNode, nid: number, start: number, xattrSize: number): void {
    const area = this.bytes(start, xattrSize, 'xattr area', nid);
    const sharedCount = area[XATTR_IBODY_HEADER.sharedCount]!;
    let p = XATTR_HEADER_SIZE + sharedCount * 4;
    if (p > xattrSize) {
      throw new ErofsFormatError(
        `inode nid ${nid}: ${sharedCount} shared xattr ids do not fit in the ${xattrSize}-byte xattr area at offset ${start}`,
        { nid, offset: start, field: 'h_shared_count' },
      );
    }
    const budget: XattrBudget = { used: 0, index: new Map() };
    while (p + XATTR_ENTRY_SIZE < xattrSize) {
      const nameLen = area[p + XATTR_ENTRY.nameLen]!;
      const index = area[p + XATTR_ENTRY.nameIndex]!;
      const valueSize = area.readUInt16LE(p + XATTR_ENTRY.valueSize);
      const end = p + XATTR_ENTRY_SIZE + nameLen + valueSize;
      if (end > xattrSize) {
        throw new ErofsFormatError(
          `inode nid ${nid}: inline xattr entry at offset ${start + p} (${end - p} bytes) overruns the xattr area`,
          { nid, offset: start + p, field: 'xattr entry' },
        );
      }
      const suffix = area.subarray(p + XATTR_ENTRY_SIZE, p + XATTR_ENTRY_SIZE + nameLen);
      const value = area.subarray(p + XATTR_ENTRY_SIZE + nameLen, end);
      const key = this.xattrKey(index, suffix, nid, start + p);
      this.applyXattr(node, nid, key, Buffer.from(value), budget);
      p += (XATTR_ENTRY_SIZE + nameLen + valueSize + 3) & ~3;
    }
    for (let i = 0; i < sharedCount; i++) {
      const id = area.readUInt32LE(XATTR_HEADER_SIZE + i * 4);
      const x = this.sharedXattr(id, nid);
      this.applyXattr(node, nid, x.key, x.value, budget);
    }
  }

  private xattrKey(index: number, suffix: Buffer, nid: number, offset: number): Buffer {
    const prefix = XATTR_PREFIX_BYTES[index];
    if (!prefix) {
      throw new ErofsFormatError(`inode nid ${nid}: xattr entry at offset ${offset} has unknown name index ${index}`, {
        nid,
        offset,
        field: 'e_name_index',
      });
    }
    return Buffer.concat([prefix, cstr(suffix)]);
  }

  private sharedXattr(id: number, nid: number): Xattr {
    const cached = this.sharedCache.get(id);
    if (cached) return cached;
    const off = this.xattrStart + id * 4;
    const hdr = this.bytes(off, XATTR_ENTRY_SIZE, `shared xattr id ${id}`, nid);
    const nameLen = hdr[XATTR_ENTRY.nameLen]!;
    const valueSize = hdr.readUInt16LE(XATTR_ENTRY.valueSize);
    const body = this.bytes(off + XATTR_ENTRY_SIZE, nameLen + valueSize, `shared xattr id ${id}`, nid);
    const x = {
      key: this.xattrKey(hdr[XATTR_ENTRY.nameIndex]!, body.subarray(0, nameLen), nid, off),
      value: Buffer.from(body.subarray(nameLen)),
    };
    this.sharedCache.set(id, x);
    return x;
  }

  /** lcfs_build_node_erofs_xattr: overlay xattrs become payload/digest/whiteouts or are dropped. */
  private applyXattr(node: TreeNode, nid: number, key: Buffer, value: Buffer, budget: XattrBudget): void {
    const isReg = (node.mode & S_IFMT) === S_IFREG;
    if (key.equals(X_REDIRECT)) {
      if (isReg) {
        const v = value.length > 1 && value[0] === 0x2f ? value.subarray(1) : value;
        node.payload = Buffer.from(cstr(v));
      }
      return;
    }
    if (key.equals(X_METACOPY)) {
      if (isReg && value.length === 4 + DIGEST_SIZE) node.digest = Buffer.from(value.subarray(4));
      return;
    }
    if (isReg && key.equals(X_ESC_WHITEOUT)) {
      node.mode = (node.mode & ~S_IFMT) | S_IFCHR;
      node.rdev = 0n;
      node.size = 0n;
      if (node.content) node.content = Buffer.alloc(0);
      return;
    }
    if (X_DROPPED.some((d) => key.equals(d))) return;
    if (hasPrefix(key, OVERLAY_PREFIX)) {
      if (!hasPrefix(key, OVERLAY_ESCAPE_PREFIX)) return;
      key = Buffer.concat([key.subarray(0, TRUSTED_PREFIX_LEN), key.subarray(OVERLAY_PREFIX.length)]);
    }
    // lcfs_node_set_xattr_internal(from_external_input = false)
    if (key.length === 0 || key.length > XATTR_NAME_MAX) {
      throw new ErofsFormatError(`inode nid ${nid}: xattr name of ${key.length} bytes is invalid`, {
        nid,
        field: 'xattr name',
      });
    }
    const name = key.toString('latin1');
    const i = budget.index.get(name);
    if (i !== undefined) {
      // lcfs_node_unset_xattr: the last entry takes the removed one's place
      const old = node.xattrs[i]!;
      const last = node.xattrs.pop()!;
      budget.index.delete(name);
      if (i < node.xattrs.length) {
        node.xattrs[i] = last;
        budget.index.set(last.key.toString('latin1'), i);
      }
      budget.used = node.xattrs.length > 0 ? budget.used - (7 + old.key.length + old.value.length) : 0;
    }
    const cost = 7 + key.length + value.length + (node.xattrs.length === 0 ? XATTR_HEADER_SIZE : 0);
    if (budget.used + cost > XATTR_SIZE_MAX) {
      throw new ErofsFormatError(`inode nid ${nid}: xattrs exceed 65535 bytes`, { nid, field: 'xattrs' });
    }
    budget.used += cost;
    budget.index.set(name, node.xattrs.length);
    node.xattrs.push({ key, value });
  }
}

/** Read the composefs header and EROFS superblock of an image. */
export function readErofsImageInfo(image: Buffer): ErofsImageInfo {
  return readHeader(new BufferSource(image));
}

/** Read an image held in memory into a tree (sync). Throws `ErofsFormatError` on malformed input. */
export function readErofsImageSync(image: Buffer, opts: ReadErofsOptions = {}): TreeNode {
  const src = new BufferSource(image);
  return new ImageReader(src, readHeader(src), opts).read();
}

/** Read an image file into a tree, reading it on demand (not loaded whole), without the header info. */
function readErofsFile(path: string, opts: ReadErofsOptions): { root: TreeNode; info: ErofsImageInfo } {
  // Checked before opening: opening a FIFO would block this thread, signals included.
  if (!statSync(path).isFile()) throw new ErofsFormatError(`${path}: not a regular file (an image is read from a file)`, { path });
  const fd = openSync(path, 'r');
  try {
    const src = new FdSource(fd, path);
    const info = readHeader(src);
    return { root: new ImageReader(src, info, opts).read(), info };
  } finally {
    closeSync(fd);
  }
}

/**
 * Read an EROFS/composefs image (a path or the image bytes) into a tree. A path is read on demand
 * through a bounded page cache, so memory grows with the tree, not with the image size.
 */
export async function readErofsImage(pathOrBuffer: string | Buffer, opts: ReadErofsOptions = {}): Promise<TreeNode> {
  if (Buffer.isBuffer(pathOrBuffer)) return readErofsImageSync(pathOrBuffer, opts);
  return readErofsFile(pathOrBuffer, opts).root;
}

/** Like `readErofsImage`, also returning the header/superblock fields. */
export async function readErofsImageWithInfo(
  pathOrBuffer: string | Buffer,
  opts: ReadErofsOptions = {},
): Promise<{ root: TreeNode; info: ErofsImageInfo }> {
  if (Buffer.isBuffer(pathOrBuffer)) {
    const src = new BufferSource(pathOrBuffer);
    const info = readHeader(src);
    return { root: new ImageReader(src, info, opts).read(), info };
  }
  return readErofsFile(pathOrBuffer, opts);
}
