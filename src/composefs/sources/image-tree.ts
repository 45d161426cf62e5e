/**
 * The rules shared by the two "container filesystem" sources — OCI layers (oci-layers.ts) and a
 * directory on disk (directory.ts) — so that an image and its faithful extraction give the same
 * composefs tree, hence the same digest. README "composefs from images and directories" is the
 * user-facing statement of these rules; keep the two in sync.
 *
 *  - mtime: whole seconds (nanoseconds are dropped on both paths; tar headers have seconds, PAX
 *    fractions and on-disk nanoseconds are floored).
 *  - regular files: 1..64 bytes are stored inline (like `mkcomposefs DIR`); larger files are
 *    external: fs-verity digest + payload `hh/rest-of-hex`; empty files have neither.
 *  - xattrs: `allowlist` (default) keeps `security.capability`, `security.ima` and `user.*`
 *    except `user.overlay.*`; `all` keeps every xattr as found.
 *  - hardlinks: several names sharing one inode (tar link entries / same st_dev+st_ino on disk);
 *    nlink = number of names; the first name in depth-first, byte-sorted order owns the inode.
 *  - the root: `image` (default) — layers: the most-derived tar root entry (`./`, `/`), or, when
 *    no layer has one, the synthesized root (040555, 0:0, no xattrs, mtime = newest mtime of the
 *    final tree); directory: the directory's own metadata. `synthesize` always synthesizes,
 *    `from-usr` copies `/usr` (mode, uid, gid, mtime, xattrs) and empties `/run` (a directory),
 *    giving it `/usr`'s mtime, like current composefs-rs (`transform_for_oci`).
 *  - implicit directories (a parent a layer implies without an entry for it): 040755, 0:0, no
 *    xattrs, mtime = newest mtime of the final tree (like the synthesized root).
 *  - "newest mtime" = the largest mtime of all entries that have their own metadata (not the root,
 *    not implicit directories) in the final merged tree, before the boot transform; 0 if none.
 *  - boot variant: `/boot` and `/sysroot`, where they are directories, lose all their entries and
 *    take `/usr`'s mtime (the root's when there is no `/usr`); their mode, owner and xattrs stay.
 */
import { S_IFDIR, S_IFLNK, S_IFMT, TreeNode, type Xattr } from '../../tree/model.js';
import { ComposefsSourceError } from './errors.js';

export type XattrPolicy = 'allowlist' | 'all';
export type RootMetadataPolicy = 'image' | 'synthesize' | 'from-usr';

export interface ImageTreeOptions {
  /** Which xattrs are kept (default `allowlist`). */
  xattrs?: XattrPolicy;
  /** Where the root directory's metadata comes from (default `image`). */
  rootMetadata?: RootMetadataPolicy;
  /** Empty `/boot` and `/sysroot` (the bootable variant). */
  bootVariant?: boolean;
}

/** Files of at most this many bytes are stored inline in the image. */
export const INLINE_MAX = 64;
export const SYNTH_ROOT_MODE = S_IFDIR | 0o555;
export const IMPLICIT_DIR_MODE = S_IFDIR | 0o755;
export const XATTR_POLICIES: readonly XattrPolicy[] = ['allowlist', 'all'];
export const ROOT_POLICIES: readonly RootMetadataPolicy[] = ['image', 'synthesize', 'from-usr'];

const ALLOW_EXACT = new Set(['security.capability', 'security.ima']);
const USER = Buffer.from('user.');
const USER_OVERLAY = Buffer.from('user.overlay.');

/** Is the xattr `key` kept under `policy`? */
export function keepXattr(key: Buffer, policy: XattrPolicy): boolean {
  if (policy === 'all') return true;
  if (key.length > USER.length && key.subarray(0, USER.length).equals(USER)) {
    return !(key.length >= USER_OVERLAY.length && key.subarray(0, USER_OVERLAY.length).equals(USER_OVERLAY));
  }
  return ALLOW_EXACT.has(key.toString('latin1'));
}

export function filterXattrs(xs: Xattr[], policy: XattrPolicy): Xattr[] {
  return policy === 'all' ? xs : xs.filter((x) => keepXattr(x.key, policy));
}

/** One inode of the build tree (directories have exactly one name; other inodes may have more). */
export interface Inode {
  mode: number;
  uid: number;
  gid: number;
  rdev: bigint;
  size: bigint;
  mtimeSec: bigint;
  /** Nanoseconds (only trees converted from a TreeNode carry them; the image rules use seconds). */
  mtimeNsec?: number;
  xattrs: Xattr[];
  /** Symlink target, or the `hh/rest` backing path of an external regular file. */
  payload?: Buffer | undefined;
  /** Inline content (regular files of 1..64 bytes). */
  content?: Buffer | undefined;
  /** fs-verity digest of an external regular file. */
  digest?: Buffer | undefined;
  /** A directory that exists only because a layer implies it (metadata filled in by finalize). */
  implicit?: boolean;
  /** Per-layer trees: the directory carries an opaque marker (`trusted.overlay.opaque=y`). */
  opaque?: boolean;
}

export const isDirInode = (i: Inode): boolean => (i.mode & S_IFMT) === S_IFDIR;

export function implicitDirInode(): Inode {
  return { mode: IMPLICIT_DIR_MODE, uid: 0, gid: 0, rdev: 0n, size: 0n, mtimeSec: 0n, xattrs: [], implicit: true };
}

/** A directory entry: a name's inode and, for directories, the entries (latin1 name → entry). */
export class Entry {
  kids: Map<string, Entry> | undefined;
  constructor(public inode: Inode) {
    if (isDirInode(inode)) this.kids = new Map();
  }
}

/** Name key: latin1 keeps every byte distinct and round-trips exactly. */
export const key = (name: Buffer): string => name.toString('latin1');
const showPath = (parts: readonly Buffer[]): string => `/${parts.map((p) => p.toString('utf8')).join('/')}`;

/**
 * Split a tar entry name or link target into components: leading `/` and `./` dropped, `.` and
 * empty components skipped, `..` refused (it would escape the root). `[]` is the root.
 */
export function splitEntryPath(path: Buffer, fail: (msg: string) => never): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === 0x2f) {
      const c = path.subarray(start, i);
      start = i + 1;
      if (c.length === 0 || (c.length === 1 && c[0] === 0x2e)) continue;
      if (c.length === 2 && c[0] === 0x2e && c[1] === 0x2e) fail(`path ${JSON.stringify(path.toString('utf8'))} contains ".."`);
      out.push(c);
    }
  }
  return out;
}

/** The tree being built from layers or a directory, before the finalizing rules. */
export class BuildTree {
  readonly root: Entry;

  constructor(rootInode?: Inode) {
    this.root = new Entry(rootInode ?? { ...implicitDirInode(), mode: SYNTH_ROOT_MODE });
  }

  /** The entry at `parts`, without following symlinks. */
  lookup(parts: readonly Buffer[]): Entry | undefined {
    let e: Entry | undefined = this.root;
    for (const p of parts) {
      e = e.kids?.get(key(p));
      if (!e) return undefined;
    }
    return e;
  }

  /** The parent directory of `parts`, creating missing directories as implicit ones. */
  parentOf(parts: readonly Buffer[], where: string, create = true): Entry | undefined {
    let e = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      const k = key(parts[i]!);
      let next = e.kids!.get(k);
      if (!next) {
        if (!create) return undefined;
        next = new Entry(implicitDirInode());
        e.kids!.set(k, next);
      } else if (!next.kids) {
        throw new ComposefsSourceError(
          `${where}: ${showPath(parts)}: parent ${showPath(parts.slice(0, i + 1))} is not a directory${(next.inode.mode & S_IFMT) === S_IFLNK ? ' (a symlink; symlinks are not followed)' : ''}`,
          { path: showPath(parts) },
        );
      }
      e = next;
    }
    return e;
  }

  /**
   * Put an inode at `parts`: a directory over a directory replaces the metadata and keeps the
   * entries; anything else replaces what was there (with its subtree). `[]` is the root.
   */
  put(parts: readonly Buffer[], inode: Inode, where: string): Entry {
    if (parts.length === 0) {
      if (!isDirInode(inode)) throw new ComposefsSourceError(`${where}: the root entry is not a directory`, { path: '/' });
      this.root.inode = inode;
      return this.root;
    }
    const parent = this.parentOf(parts, where)!;
    const k = key(parts[parts.length - 1]!);
    const old = parent.kids!.get(k);
    if (old && old.kids && isDirInode(inode)) {
      old.inode = inode;
      return old;
    }
    const e = new Entry(inode);
    parent.kids!.set(k, e);
    return e;
  }

  /** A new name for the inode at `target` (which must exist and not be a directory). */
  link(parts: readonly Buffer[], target: readonly Buffer[], where: string): void {
    const t = this.lookup(target);
    if (!t) {
      throw new ComposefsSourceError(`${where}: hardlink ${showPath(parts)} → ${showPath(target)}: target does not exist`, {
        path: showPath(parts),
        target: showPath(target),
      });
    }
    if (t.kids) {
      throw new ComposefsSourceError(`${where}: hardlink ${showPath(parts)} → ${showPath(target)}: target is a directory`, {
        path: showPath(parts),
        target: showPath(target),
      });
    }
    if (parts.length === 0 || (parts.length === target.length && parts.every((p, i) => p.equals(target[i]!)))) {
      throw new ComposefsSourceError(`${where}: hardlink ${showPath(parts)} points to itself`, { path: showPath(parts) });
    }
    const parent = this.parentOf(parts, where)!;
    parent.kids!.set(key(parts[parts.length - 1]!), new Entry(t.inode));
  }

  /** Remove the entry at `parts` (no-op when absent or when a parent is not a directory). */
  remove(parts: readonly Buffer[]): void {
    if (parts.length === 0) return;
    const parent = this.lookup(parts.slice(0, -1));
    parent?.kids?.delete(key(parts[parts.length - 1]!));
  }

  /** Remove every entry of the directory at `parts` (no-op when it is absent or not a directory). */
  clear(parts: readonly Buffer[]): void {
    this.lookup(parts)?.kids?.clear();
  }
}

function sortedKids(e: Entry): [string, Entry][] {
  if (!e.kids || e.kids.size === 0) return [];
  return [...e.kids.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** Largest mtime over the entries that carry their own metadata (not the root, not implicit dirs). */
export function newestMtime(tree: BuildTree): bigint {
  let newest: bigint | undefined;
  const stack: Entry[] = [tree.root];
  while (stack.length) {
    const e = stack.pop()!;
    if (e !== tree.root && !e.inode.implicit && (newest === undefined || e.inode.mtimeSec > newest)) newest = e.inode.mtimeSec;
    if (e.kids) for (const c of e.kids.values()) stack.push(c);
  }
  return newest ?? 0n;
}

const OPAQUE_KEY = Buffer.from('trusted.overlay.opaque');
const OPAQUE_VALUE = Buffer.from('y');

/**
 * Apply the root, implicit-directory and boot rules (module comment) and produce the `TreeNode`
 * tree the composefs writer consumes. `where` names the source in errors.
 */
export function finalizeTree(tree: BuildTree, opts: ImageTreeOptions, where: string): TreeNode {
  const newest = newestMtime(tree);
  // Implicit directories (including an unset root) get their metadata first, so that `from-usr`
  // can copy an implicit /usr.
  const stack: Entry[] = [tree.root];
  while (stack.length) {
    const e = stack.pop()!;
    if (e.inode.implicit) {
      e.inode = { ...implicitDirInode(), mode: e === tree.root ? SYNTH_ROOT_MODE : IMPLICIT_DIR_MODE, mtimeSec: newest, implicit: true, opaque: e.inode.opaque };
    }
    if (e.kids) for (const c of e.kids.values()) if (c.kids) stack.push(c);
  }
  const policy = opts.rootMetadata ?? 'image';
  if (policy === 'synthesize') {
    tree.root.inode = { mode: SYNTH_ROOT_MODE, uid: 0, gid: 0, rdev: 0n, size: 0n, mtimeSec: newest, xattrs: [], opaque: tree.root.inode.opaque };
  } else if (policy === 'from-usr') {
    const usr = tree.root.kids!.get('usr');
    if (!usr?.kids) throw new ComposefsSourceError(`${where}: --root-metadata=from-usr: there is no /usr directory`, { path: '/usr' });
    const u = usr.inode;
    tree.root.inode = { mode: u.mode, uid: u.uid, gid: u.gid, rdev: 0n, size: 0n, mtimeSec: u.mtimeSec, xattrs: u.xattrs.slice(), opaque: tree.root.inode.opaque };
    // The rest of composefs-rs's transform_for_oci: a /run directory is emptied and takes /usr's mtime.
    const run = tree.root.kids!.get('run');
    if (run?.kids) {
      run.kids.clear();
      run.inode = { ...run.inode, mtimeSec: u.mtimeSec, mtimeNsec: u.mtimeNsec };
    }
  }
  if (opts.bootVariant) {
    const usr = tree.root.kids!.get('usr');
    const from = usr?.kids ? usr.inode : tree.root.inode;
    for (const name of ['boot', 'sysroot']) {
      const e = tree.root.kids!.get(name);
      if (!e?.kids) continue;
      e.kids.clear();
      e.inode = { ...e.inode, mtimeSec: from.mtimeSec, mtimeNsec: from.mtimeNsec };
    }
  }
  return toTreeNode(tree.root);
}

/** Convert to `TreeNode`s: hardlinks owned by the first name in depth-first byte order. */
function toTreeNode(root: Entry): TreeNode {
  // Pass 1: count names per non-directory inode.
  const names = new Map<Inode, number>();
  const st: Entry[] = [root];
  while (st.length) {
    const e = st.pop()!;
    if (e.kids) {
      for (const c of e.kids.values()) st.push(c);
    } else names.set(e.inode, (names.get(e.inode) ?? 0) + 1);
  }
  const owners = new Map<Inode, TreeNode>();
  const make = (name: Buffer, e: Entry): TreeNode => {
    const i = e.inode;
    const n = new TreeNode(name, i.mode);
    if (!e.kids && (names.get(i) ?? 1) > 1) {
      const owner = owners.get(i);
      if (owner) {
        n.mode = 0;
        n.linkTo = owner;
        return n;
      }
      owners.set(i, n);
    }
    n.uid = i.uid;
    n.gid = i.gid;
    n.rdev = i.rdev;
    n.size = i.size;
    n.mtimeSec = i.mtimeSec;
    n.mtimeNsec = i.mtimeNsec ?? 0;
    n.xattrs = i.xattrs.map((x) => ({ key: x.key, value: x.value }));
    if (i.opaque) n.setXattr(OPAQUE_KEY, OPAQUE_VALUE);
    n.payload = i.payload;
    n.content = i.content;
    n.digest = i.digest;
    n.nlink = e.kids ? 2 : (names.get(i) ?? 1);
    return n;
  };
  const top = make(Buffer.alloc(0), root);
  // True depth-first pre-order with sorted children, so "first name" is the dumpfile order.
  const work: [Entry, string, TreeNode][] = [];
  const pushKids = (e: Entry, n: TreeNode): void => {
    const kids = sortedKids(e);
    for (let i = kids.length - 1; i >= 0; i--) work.push([kids[i]![1], kids[i]![0], n]);
  };
  pushKids(root, top);
  while (work.length) {
    const [e, k, parent] = work.pop()!;
    const n = make(Buffer.from(k, 'latin1'), e);
    parent.addChild(n);
    if (e.kids) {
      parent.nlink++;
      pushKids(e, n);
    }
  }
  return top;
}

/** A build tree holding exactly the tree `root` (hardlink nodes share their owner's inode). */
export function buildTreeOf(root: TreeNode): BuildTree {
  const inodes = new Map<TreeNode, Inode>();
  const inodeOf = (n: TreeNode): Inode => {
    const o = n.resolve();
    let i = inodes.get(o);
    if (!i) {
      i = {
        mode: o.mode,
        uid: o.uid,
        gid: o.gid,
        rdev: o.rdev,
        size: o.size,
        mtimeSec: o.mtimeSec,
        mtimeNsec: o.mtimeNsec,
        xattrs: o.xattrs.map((x) => ({ key: x.key, value: x.value })),
        payload: o.payload,
        content: o.content,
        digest: o.digest,
      };
      inodes.set(o, i);
    }
    return i;
  };
  const tree = new BuildTree(inodeOf(root));
  const stack: [TreeNode, Entry][] = [[root, tree.root]];
  while (stack.length) {
    const [n, e] = stack.pop()!;
    for (const c of n.children()) {
      const ce = new Entry(inodeOf(c));
      e.kids!.set(key(c.name), ce);
      if (ce.kids) stack.push([c, ce]);
    }
  }
  return tree;
}

/**
 * The boot variant of any tree (e.g. an ostree commit's): `/boot` and `/sysroot` emptied, with
 * `/usr`'s mtime — the same transform `--boot-variant` applies to images and directories.
 */
export function bootVariantOf(root: TreeNode): TreeNode {
  return finalizeTree(buildTreeOf(root), { bootVariant: true }, '/');
}
