/**
 * EROFS + composefs on-disk format: constants, struct layouts (byte offsets) and small pure
 * helpers shared by the writer (writer.ts) and the reader (reader.ts).
 *
 * Everything here follows /work/shared/specs/composefs-format.md §1 and §5 (libcomposefs 1.0.8,
 * `lcfs-erofs.h`, `erofs_fs.h`). All integers on disk are little-endian.
 */

// ---------------------------------------------------------------------------------------------
// Geometry

export const EROFS_BLKSIZ_BITS = 12;
export const EROFS_BLKSIZ = 1 << EROFS_BLKSIZ_BITS; // 4096
export const EROFS_ISLOTBITS = 5;
export const EROFS_SLOTSIZE = 1 << EROFS_ISLOTBITS; // 32: nid = byte offset / 32 (meta_blkaddr 0)
export const EROFS_SUPER_OFFSET = 1024;
export const EROFS_SUPER_SIZE = 128;
/** First inode byte: right after the superblock. */
export const EROFS_INODES_START = EROFS_SUPER_OFFSET + EROFS_SUPER_SIZE; // 1152

// ---------------------------------------------------------------------------------------------
// composefs header (offset 0, 32 bytes, zeros up to 1024)

export const LCFS_EROFS_MAGIC = 0xd078629a;
/** The composefs header `version` field: a constant 1. */
export const LCFS_EROFS_VERSION = 1;
/** Highest composefs *format* version (`composefs_version` field) mkcomposefs 1.0.8 writes. */
export const LCFS_VERSION_MAX = 1;
export const LCFS_DEFAULT_VERSION_MIN = 0;
export const LCFS_DEFAULT_VERSION_MAX = 1;
export const LCFS_EROFS_FLAGS_HAS_ACL = 1 << 0;

export const COMPOSEFS_HEADER = {
  magic: 0, // u32
  version: 4, // u32
  flags: 8, // u32
  composefsVersion: 12, // u32
  unused: 16, // u32[4]
  SIZE: 32,
} as const;

// ---------------------------------------------------------------------------------------------
// Superblock (at EROFS_SUPER_OFFSET)

export const EROFS_SUPER_MAGIC_V1 = 0xe0f5e1e2;
export const EROFS_FEATURE_COMPAT_SB_CHKSUM = 0x1;
export const EROFS_FEATURE_COMPAT_MTIME = 0x2;
export const EROFS_FEATURE_COMPAT_XATTR_FILTER = 0x4;

/** Offsets relative to the superblock start. */
export const SUPERBLOCK = {
  magic: 0, // u32
  checksum: 4, // u32
  featureCompat: 8, // u32
  blkszbits: 12, // u8
  sbExtslots: 13, // u8
  rootNid: 14, // u16
  inos: 16, // u64
  buildTime: 24, // u64
  buildTimeNsec: 32, // u32
  blocks: 36, // u32
  metaBlkaddr: 40, // u32
  xattrBlkaddr: 44, // u32
  uuid: 48, // u8[16]
  volumeName: 64, // u8[16]
  featureIncompat: 80, // u32
  availableComprAlgs: 84, // u16 (union lz4_max_distance)
  extraDevices: 86, // u16
  devtSlotoff: 88, // u16
  dirblkbits: 90, // u8
  xattrPrefixCount: 91, // u8
  xattrPrefixStart: 92, // u32
  packedNid: 96, // u64
  xattrFilterReserved: 104, // u8
  reserved2: 105, // u8[23]
  SIZE: EROFS_SUPER_SIZE,
} as const;

// ---------------------------------------------------------------------------------------------
// Inodes

export const EROFS_I_VERSION_BIT = 0;
export const EROFS_I_DATALAYOUT_BIT = 1;
export const EROFS_I_VERSION_MASK = 0x1;
export const EROFS_I_DATALAYOUT_MASK = 0x7;
export const EROFS_INODE_LAYOUT_COMPACT = 0;
export const EROFS_INODE_LAYOUT_EXTENDED = 1;

export const EROFS_INODE_FLAT_PLAIN = 0;
export const EROFS_INODE_COMPRESSED_FULL = 1;
export const EROFS_INODE_FLAT_INLINE = 2;
export const EROFS_INODE_COMPRESSED_COMPACT = 3;
export const EROFS_INODE_CHUNK_BASED = 4;

export const EROFS_CHUNK_FORMAT_BLKBITS_MASK = 0x001f;
export const EROFS_CHUNK_FORMAT_INDEXES = 0x0020;
/** "Hole" block-map entry of a chunk-based file. */
export const EROFS_NULL_ADDR = 0xffffffff;

/** 32-byte compact inode. */
export const INODE_COMPACT = {
  format: 0, // u16
  xattrIcount: 2, // u16
  mode: 4, // u16
  nlink: 6, // u16
  size: 8, // u32
  reserved: 12, // u32
  u: 16, // u32: raw_blkaddr | rdev | chunk info {format u16, reserved u16}
  ino: 20, // u32
  uid: 24, // u16
  gid: 26, // u16
  reserved2: 28, // u32
  SIZE: 32,
} as const;

/** 64-byte extended inode. */
export const INODE_EXTENDED = {
  format: 0, // u16
  xattrIcount: 2, // u16
  mode: 4, // u16
  reserved: 6, // u16
  size: 8, // u64
  u: 16, // u32
  ino: 20, // u32
  uid: 24, // u32
  gid: 28, // u32
  mtime: 32, // u64
  mtimeNsec: 40, // u32
  nlink: 44, // u32
  reserved2: 48, // u8[16]
  SIZE: 64,
} as const;

// ---------------------------------------------------------------------------------------------
// Xattrs

/** Inline xattr area header (directly after the inode). */
export const XATTR_IBODY_HEADER = {
  nameFilter: 0, // u32, bit set = name definitely absent
  sharedCount: 4, // u8
  reserved2: 5, // u8[7]
  SIZE: 12, // followed by u32 shared ids
} as const;

/** Xattr entry (inline and shared table alike), followed by name suffix, value, pad to 4. */
export const XATTR_ENTRY = {
  nameLen: 0, // u8
  nameIndex: 1, // u8
  valueSize: 2, // u16
  SIZE: 4,
} as const;

export const EROFS_XATTR_INDEX_USER = 1;
export const EROFS_XATTR_INDEX_POSIX_ACL_ACCESS = 2;
export const EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT = 3;
export const EROFS_XATTR_INDEX_TRUSTED = 4;
export const EROFS_XATTR_INDEX_LUSTRE = 5;
export const EROFS_XATTR_INDEX_SECURITY = 6;

/**
 * Name prefixes by index, as the kernel resolves them (index 0 = no prefix). The writer matches
 * only indexes 1,2,3,4,6 in that order (mkcomposefs never emits `lustre.`).
 */
export const XATTR_PREFIXES: readonly string[] = [
  '',
  'user.',
  'system.posix_acl_access',
  'system.posix_acl_default',
  'trusted.',
  'lustre.',
  'security.',
];

/** The writer's prefix table, in match order (first match wins). */
export const WRITER_XATTR_PREFIXES: readonly { prefix: Buffer; index: number }[] = [
  { prefix: Buffer.from('user.'), index: EROFS_XATTR_INDEX_USER },
  { prefix: Buffer.from('system.posix_acl_access'), index: EROFS_XATTR_INDEX_POSIX_ACL_ACCESS },
  { prefix: Buffer.from('system.posix_acl_default'), index: EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT },
  { prefix: Buffer.from('trusted.'), index: EROFS_XATTR_INDEX_TRUSTED },
  { prefix: Buffer.from('security.'), index: EROFS_XATTR_INDEX_SECURITY },
];

export const EROFS_XATTR_LONG_PREFIX = 0x80; // also: max shared refs per inode
export const EROFS_XATTR_LONG_PREFIX_MASK = 0x7f;
export const EROFS_XATTR_FILTER_BITS = 32;
export const EROFS_XATTR_FILTER_DEFAULT = 0xffffffff;
export const EROFS_XATTR_FILTER_SEED = 0x25bbe08f;

/** Overlayfs xattr names used by composefs. */
export const OVERLAY = {
  prefix: 'trusted.overlay.',
  escapePrefix: 'trusted.overlay.overlay.',
  metacopy: 'trusted.overlay.metacopy',
  redirect: 'trusted.overlay.redirect',
  opaque: 'trusted.overlay.opaque',
  whiteout: 'trusted.overlay.whiteout',
  whiteouts: 'trusted.overlay.whiteouts',
  escapedWhiteout: 'trusted.overlay.overlay.whiteout',
  escapedWhiteouts: 'trusted.overlay.overlay.whiteouts',
  escapedOpaque: 'trusted.overlay.overlay.opaque',
  userPrefix: 'user.overlay.',
  userWhiteout: 'user.overlay.whiteout',
  userWhiteouts: 'user.overlay.whiteouts',
  userOpaque: 'user.overlay.opaque',
} as const;

/** fs-verity hash algorithm ids (metacopy byte 3). */
export const FS_VERITY_HASH_ALG_SHA256 = 1;
export const FS_VERITY_HASH_ALG_SHA512 = 2;
/** Length of the metacopy xattr carrying a SHA-256 digest: [0, 36, 0, 1] ‖ digest. */
export const METACOPY_SHA256_LEN = 4 + 32;

// ---------------------------------------------------------------------------------------------
// Directories

/** 12-byte directory entry; a chunk is all dirents then all names (no NUL, no padding). */
export const DIRENT = {
  nid: 0, // u64
  nameoff: 8, // u16
  fileType: 10, // u8
  reserved: 11, // u8
  SIZE: 12,
} as const;

export const EROFS_FT_UNKNOWN = 0;
export const EROFS_FT_REG_FILE = 1;
export const EROFS_FT_DIR = 2;
export const EROFS_FT_CHRDEV = 3;
export const EROFS_FT_BLKDEV = 4;
export const EROFS_FT_FIFO = 5;
export const EROFS_FT_SOCK = 6;
export const EROFS_FT_SYMLINK = 7;

/** EROFS dirent file_type for a full st_mode. */
export function erofsFileType(mode: number): number {
  switch (mode & 0o170000) {
    case 0o100000:
      return EROFS_FT_REG_FILE;
    case 0o040000:
      return EROFS_FT_DIR;
    case 0o020000:
      return EROFS_FT_CHRDEV;
    case 0o060000:
      return EROFS_FT_BLKDEV;
    case 0o010000:
      return EROFS_FT_FIFO;
    case 0o140000:
      return EROFS_FT_SOCK;
    case 0o120000:
      return EROFS_FT_SYMLINK;
    default:
      return EROFS_FT_UNKNOWN;
  }
}

// ---------------------------------------------------------------------------------------------
// Limits (libcomposefs)

export const LCFS_INLINE_CONTENT_MAX = 5000;
export const LCFS_RECOMMENDED_INLINE_CONTENT_MAX = 64;
export const LCFS_INODE_EXTERNAL_XATTR_MAX = 32767;
export const LCFS_MAX_NONINLINE_CHUNKS = 1024;
export const LCFS_MAX_NAME_LENGTH = 255;
export const LCFS_XATTR_HEADER_SIZE = 12;
/** Per-xattr accounting overhead of the libcomposefs budget: 2·4 − 1. */
export const LCFS_XATTR_ENTRY_OVERHEAD = 7;
export const PATH_MAX = 4096;
export const XATTR_NAME_MAX = 255;
export const XATTR_SIZE_MAX = 65535;

// ---------------------------------------------------------------------------------------------
// Helpers

export const roundUp = (x: number, a: number): number => Math.ceil(x / a) * a;

/**
 * Chunking of an external (chunk-based) regular file (libcomposefs erofs_compute_chunking):
 * chunkBits = clamp(ilog2(size−1)+1, 12, 43) (ilog2(0) = 0, so size 1 → 12) and
 * chunkCount = DIV_ROUND_UP(size, 2^chunkBits) computed in uint64_t (the addition wraps for
 * sizes near 2^64, e.g. 2^64−1 gives 0 chunks) and stored in a uint32_t.
 */
export function computeChunking(size: bigint): { chunkBits: number; chunkCount: number } {
  let bits: number;
  const small = size <= 0x20000000000000n;
  if (small) {
    const m = Number(size) - 1;
    if (m <= 0) bits = 1;
    else {
      const hi = Math.floor(m / 0x100000000);
      bits = hi > 0 ? 64 - Math.clz32(hi) : 32 - Math.clz32(m >>> 0);
    }
  } else {
    bits = (size - 1n).toString(2).length;
  }
  if (bits < EROFS_BLKSIZ_BITS) bits = EROFS_BLKSIZ_BITS;
  if (bits - EROFS_BLKSIZ_BITS > EROFS_CHUNK_FORMAT_BLKBITS_MASK) bits = EROFS_CHUNK_FORMAT_BLKBITS_MASK + EROFS_BLKSIZ_BITS;
  let count: number;
  if (small) count = Math.ceil(Number(size) / 2 ** bits);
  else {
    const c = BigInt.asUintN(64, size + (1n << BigInt(bits)) - 1n) >> BigInt(bits);
    count = Number(BigInt.asUintN(32, c));
  }
  return { chunkBits: bits, chunkCount: count };
}

/** The EROFS name index and suffix offset the writer uses for an xattr key. */
export function xattrPrefixOf(key: Buffer): { index: number; suffixStart: number } {
  for (const p of WRITER_XATTR_PREFIXES) {
    if (key.length >= p.prefix.length && key.compare(p.prefix, 0, p.prefix.length, 0, p.prefix.length) === 0) {
      return { index: p.index, suffixStart: p.prefix.length };
    }
  }
  return { index: 0, suffixStart: 0 };
}

const P1 = 2654435761;
const P2 = 2246822519;
const P3 = 3266489917;
const P4 = 668265263;
const P5 = 374761393;
const rotl = (x: number, r: number): number => ((x << r) | (x >>> (32 - r))) >>> 0;

/** Standard XXH32 of `buf[start, end)` (32-bit arithmetic, little-endian words). */
export function xxh32(buf: Uint8Array, seed: number, start = 0, end = buf.length): number {
  let p = start;
  const len = end - start;
  let h: number;
  const word = (i: number): number =>
    (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24)) >>> 0;
  if (len >= 16) {
    const limit = end - 16;
    let v1 = (seed + P1 + P2) >>> 0;
    let v2 = (seed + P2) >>> 0;
    let v3 = seed >>> 0;
    let v4 = (seed - P1) >>> 0;
    do {
      v1 = Math.imul(rotl((v1 + Math.imul(word(p), P2)) >>> 0, 13), P1) >>> 0;
      p += 4;
      v2 = Math.imul(rotl((v2 + Math.imul(word(p), P2)) >>> 0, 13), P1) >>> 0;
      p += 4;
      v3 = Math.imul(rotl((v3 + Math.imul(word(p), P2)) >>> 0, 13), P1) >>> 0;
      p += 4;
      v4 = Math.imul(rotl((v4 + Math.imul(word(p), P2)) >>> 0, 13), P1) >>> 0;
      p += 4;
    } while (p <= limit);
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) >>> 0;
  } else {
    h = (seed + P5) >>> 0;
  }
  h = (h + len) >>> 0;
  while (p + 4 <= end) {
    h = Math.imul(rotl((h + Math.imul(word(p), P3)) >>> 0, 17), P4) >>> 0;
    p += 4;
  }
  while (p < end) {
    h = Math.imul(rotl((h + Math.imul(buf[p]!, P5)) >>> 0, 11), P1) >>> 0;
    p++;
  }
  h ^= h >>> 15;
  h = Math.imul(h, P2) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, P3) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** Bloom-filter bit (0..31) of one xattr for `h_name_filter`. */
export function xattrFilterBit(index: number, key: Uint8Array, suffixStart: number): number {
  return xxh32(key, (EROFS_XATTR_FILTER_SEED + index) >>> 0, suffixStart, key.length) & (EROFS_XATTR_FILTER_BITS - 1);
}

/** `i_xattr_icount` for an inline xattr area of `xattrSize` bytes. */
export const xattrIcount = (xattrSize: number): number =>
  xattrSize === 0 ? 0 : (xattrSize - XATTR_IBODY_HEADER.SIZE) / 4 + 1;

/** Size of the inline xattr area for an `i_xattr_icount` (reader side). */
export const xattrIbodySize = (icount: number): number =>
  icount === 0 ? 0 : XATTR_IBODY_HEADER.SIZE + (icount - 1) * 4;

/** Size of one xattr entry (inline or shared): 4 + name suffix + value, padded to 4. */
export const xattrEntrySize = (suffixLen: number, valueLen: number): number =>
  (XATTR_ENTRY.SIZE + suffixLen + valueLen + 3) & ~3;
