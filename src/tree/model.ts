/**
 * The one in-memory filesystem tree that every source fills (ostree commit, OCI layers, directory,
 * dumpfile, EROFS image) and every sink reads (dumpfile, EROFS, tar stream, ostree objects).
 *
 * Only names and metadata live here; file bytes stay where they are (a payload path, an ostree
 * object, a layer) so memory grows with the number of entries, never with the bytes. The only
 * exception is small inline content (≤ 5000 bytes, as composefs allows).
 *
 * A node is a directory entry plus its inode, like libcomposefs' lcfs_node: a hardlink is a node of
 * its own whose `linkTo` names the node that owns the inode. This keeps "which path is the primary"
 * explicit, which the EROFS writer needs to be byte-identical to mkcomposefs.
 */

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export const fileType = (mode: number): number => mode & S_IFMT;
export const isDir = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;
export const isReg = (mode: number): boolean => (mode & S_IFMT) === S_IFREG;
export const isLnk = (mode: number): boolean => (mode & S_IFMT) === S_IFLNK;
export const isChr = (mode: number): boolean => (mode & S_IFMT) === S_IFCHR;
export const isBlk = (mode: number): boolean => (mode & S_IFMT) === S_IFBLK;

const VALID_TYPES = new Set([S_IFSOCK, S_IFLNK, S_IFREG, S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO]);
export const isValidType = (mode: number): boolean => VALID_TYPES.has(mode & S_IFMT);

/** One extended attribute; keys and values are raw bytes (keys never contain NUL). */
export interface Xattr {
  key: Buffer;
  value: Buffer;
}

/** Name key for maps: latin1 keeps every byte distinct and round-trips exactly. */
const nameKey = (name: Buffer): string => name.toString('latin1');

export class TreeNode {
  /** Name in the parent directory (raw bytes); empty for the root. */
  name: Buffer;
  parent: TreeNode | undefined;

  /** Full st_mode: type bits plus permissions. */
  mode = 0;
  uid = 0;
  gid = 0;
  nlink = 1;
  rdev = 0n;
  /** File size; for symlinks the target length. */
  size = 0n;
  /** Seconds are signed 64-bit; nanoseconds unsigned 32-bit. */
  mtimeSec = 0n;
  mtimeNsec = 0;
  /** In insertion order; writers sort as their format requires. */
  xattrs: Xattr[] = [];
  /**
   * Symlink target for symlinks; for regular files the backing-file path of a composefs
   * external file (e.g. `ab/cdef…`), relative to the object store.
   */
  payload: Buffer | undefined;
  /** Inline file content (small files only). */
  content: Buffer | undefined;
  /** fs-verity SHA-256 digest of the file content (32 bytes). */
  digest: Buffer | undefined;
  /** For hardlink nodes: the node that owns the inode. */
  linkTo: TreeNode | undefined;
  /**
   * Where a sink can read this file's bytes when they are not inline (an ostree content
   * checksum, a path on disk, a layer offset…). Opaque to the tree; sources and sinks agree on it.
   */
  source: unknown;

  private kids: Map<string, TreeNode> | undefined;
  private sortedKids: TreeNode[] | undefined;

  constructor(name: Buffer | string = Buffer.alloc(0), mode = 0) {
    this.name = typeof name === 'string' ? Buffer.from(name) : name;
    this.mode = mode;
  }

  get isDir(): boolean {
    return isDir(this.mode);
  }

  /** Follow hardlink nodes to the node that owns the inode (throws on a cycle). */
  resolve(): TreeNode {
    let n: TreeNode = this;
    for (let i = 0; n.linkTo; i++) {
      if (i > 1_000_000) throw new Error(`hardlink cycle at ${this.pathString()}`);
      n = n.linkTo;
    }
    return n;
  }

  childCount(): number {
    return this.kids?.size ?? 0;
  }

  getChild(name: Buffer | string): TreeNode | undefined {
    return this.kids?.get(typeof name === 'string' ? nameKey(Buffer.from(name)) : nameKey(name));
  }

  /** Add a child; returns false (and adds nothing) when the name exists already. */
  addChild(child: TreeNode): boolean {
    const key = nameKey(child.name);
    this.kids ??= new Map();
    if (this.kids.has(key)) return false;
    this.kids.set(key, child);
    child.parent = this;
    this.sortedKids = undefined;
    return true;
  }

  /** Add or replace the child of that name. */
  setChild(child: TreeNode): void {
    this.kids ??= new Map();
    const key = nameKey(child.name);
    const old = this.kids.get(key);
    if (old) old.parent = undefined;
    this.kids.set(key, child);
    child.parent = this;
    this.sortedKids = undefined;
  }

  removeChild(name: Buffer | string): TreeNode | undefined {
    const key = typeof name === 'string' ? nameKey(Buffer.from(name)) : nameKey(name);
    const old = this.kids?.get(key);
    if (!old) return undefined;
    this.kids!.delete(key);
    old.parent = undefined;
    this.sortedKids = undefined;
    return old;
  }

  clearChildren(): void {
    for (const c of this.kids?.values() ?? []) c.parent = undefined;
    this.kids = undefined;
    this.sortedKids = undefined;
  }

  /** Children sorted by name in strcmp (unsigned byte) order. The array must not be mutated. */
  children(): readonly TreeNode[] {
    if (!this.kids) return [];
    this.sortedKids ??= [...this.kids.values()].sort((a, b) => Buffer.compare(a.name, b.name));
    return this.sortedKids;
  }

  /** Absolute path bytes, `/` for the root. */
  path(): Buffer {
    const parts: Buffer[] = [];
    for (let n: TreeNode | undefined = this; n?.parent; n = n.parent) parts.push(n.name);
    if (parts.length === 0) return Buffer.from('/');
    const out: Buffer[] = [];
    for (let i = parts.length - 1; i >= 0; i--) out.push(Buffer.from('/'), parts[i]!);
    return Buffer.concat(out);
  }

  /** Path for messages (bytes shown as UTF-8 with replacement). */
  pathString(): string {
    return this.path().toString('utf8');
  }

  getXattr(key: string | Buffer): Buffer | undefined {
    const k = typeof key === 'string' ? Buffer.from(key) : key;
    return this.xattrs.find((x) => x.key.equals(k))?.value;
  }

  /** Set or replace an xattr (keeps the position of an existing key). */
  setXattr(key: string | Buffer, value: Buffer): void {
    const k = typeof key === 'string' ? Buffer.from(key) : key;
    const i = this.xattrs.findIndex((x) => x.key.equals(k));
    if (i >= 0) this.xattrs[i] = { key: k, value };
    else this.xattrs.push({ key: k, value });
  }

  /** Copy inode metadata (not name, parent, children) from another node. */
  copyInodeFrom(o: TreeNode): void {
    this.mode = o.mode;
    this.uid = o.uid;
    this.gid = o.gid;
    this.nlink = o.nlink;
    this.rdev = o.rdev;
    this.size = o.size;
    this.mtimeSec = o.mtimeSec;
    this.mtimeNsec = o.mtimeNsec;
    this.xattrs = o.xattrs.map((x) => ({ key: x.key, value: x.value }));
    this.payload = o.payload;
    this.content = o.content;
    this.digest = o.digest;
    this.source = o.source;
  }
}

/** Split an absolute or relative path into its non-empty components (repeated `/` collapse). */
export function splitPath(path: Buffer | string): Buffer[] {
  const b = typeof path === 'string' ? Buffer.from(path) : path;
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= b.length; i++) {
    if (i === b.length || b[i] === 0x2f) {
      if (i > start) out.push(b.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}

/** Look a path up from `root` without following hardlinks or symlinks. */
export function lookupPath(root: TreeNode, path: Buffer | string): TreeNode | undefined {
  let n: TreeNode | undefined = root;
  for (const part of splitPath(path)) {
    n = n.getChild(part);
    if (!n) return undefined;
  }
  return n;
}

/** Depth-first pre-order walk, children in strcmp order (the dumpfile order). */
export function* walk(root: TreeNode): Generator<TreeNode> {
  const stack: TreeNode[] = [root];
  while (stack.length) {
    const n = stack.pop()!;
    yield n;
    const kids = n.children();
    for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]!);
  }
}

/** A new root directory node (mode 040755, root:root, mtime 0). */
export function newRoot(): TreeNode {
  return new TreeNode(Buffer.alloc(0), S_IFDIR | 0o755);
}
