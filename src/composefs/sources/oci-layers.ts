/**
 * Source: an OCI image's layers → the composefs tree (rules in image-tree.ts and README
 * "composefs from images and directories").
 *
 * Each layer is read once, as a stream: `scanLayer` parses the tar, hashes every regular file's
 * data for fs-verity as it passes (files of 1..64 bytes are kept inline, nothing else is held)
 * and returns the layer's operations — metadata only. Operations are then applied in two steps
 * that give the OCI whiteout semantics ("whiteouts apply to lower layers only"), whatever the
 * order of the entries inside the tar:
 *
 *   1. whiteouts: `.wh..wh..opq` in D empties D as it was before this layer; `.wh.NAME` removes
 *      NAME as it was before this layer (no-op when absent);
 *   2. entries, in tar order: the root entry (`./`) replaces the root's metadata; a directory over
 *      a directory replaces the metadata and keeps the entries; anything else replaces what was
 *      there; hardlinks name an existing non-directory; missing parents are created as implicit
 *      directories (a whiteout entry implies its parent too); a parent that is not a directory
 *      (e.g. a symlink) is an error — nothing is followed.
 *
 * Other `.wh..wh.*` names (aufs metadata) are ignored. Sparse files and unknown entry types are
 * refused. The per-layer tree (`layerAloneTree`) applies one layer to an empty tree and keeps the
 * whiteouts as overlayfs does: `.wh.NAME` → NAME as a character device 0/0 (permissions 0, the
 * whiteout entry's uid/gid/mtime), `.wh..wh..opq` → `trusted.overlay.opaque=y` on its directory;
 * a whited-out NAME that the same layer makes a directory again (an entry, or the implicit parent
 * of one) is that directory with the opaque mark, and one it fills with a non-directory is just
 * that entry.
 */
import type { Readable } from 'node:stream';
import type { OciImage } from '../../oci/index.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, type TreeNode } from '../../tree/model.js';
import { FsVerityHasher } from '../fsverity.js';
import { ComposefsSourceError } from './errors.js';
import { checkLimit, resolveLimits, type ImportLimits } from '../../limits.js';
import {
  BuildTree,
  INLINE_MAX,
  filterXattrs,
  finalizeTree,
  implicitDirInode,
  splitEntryPath,
  type ImageTreeOptions,
  type Inode,
} from './image-tree.js';
import { HashPool, type PooledFile } from './hash-pool.js';
import { LayerTarParser, type EntrySink, type RawTarEntry } from './layer-tar.js';

export type LayerOp =
  /** `.wh.NAME` in directory `dir`. */
  | { op: 'whiteout'; dir: Buffer[]; name: Buffer; uid: number; gid: number; mtimeSec: bigint }
  /** `.wh..wh..opq` in directory `dir`. */
  | { op: 'opaque'; dir: Buffer[] }
  /** Any other entry (`path` `[]` is the root entry). */
  | { op: 'put'; path: Buffer[]; inode: Inode }
  | { op: 'link'; path: Buffer[]; target: Buffer[] };

export interface LayerScan {
  /** Names the layer in errors. */
  what: string;
  ops: LayerOp[];
  /** Entries and regular-file bytes seen (for progress and benchmarks). */
  entries: number;
  bytes: number;
}

const WH = Buffer.from('.wh.');
const WH_META = Buffer.from('.wh..wh.');
const WH_OPQ = Buffer.from('.wh..wh..opq');
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

const startsWith = (b: Buffer, p: Buffer): boolean => b.length >= p.length && b.subarray(0, p.length).equals(p);

/** Linux `makedev` (glibc encoding), as `st_rdev` shows it. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

/** `hh/rest` of a digest: the backing-file path composefs images redirect to. */
export function payloadOf(digest: Buffer): Buffer {
  const hex = digest.toString('hex');
  return Buffer.from(`${hex.slice(0, 2)}/${hex.slice(2)}`);
}

const TYPE_BITS: Record<string, number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO,
};

/** Files at least this big are hashed on the worker thread when a pool is given. */
const POOL_MIN = 256 << 10;

/** Regular file data → inline content (≤ 64 bytes) or fs-verity digest + payload. */
class FileSink implements EntrySink {
  private readonly hasher: FsVerityHasher | undefined;
  private readonly pooled: PooledFile | undefined;
  private readonly small: Buffer[] | undefined;
  constructor(
    private readonly inode: Inode,
    size: number,
    pool: HashPool | undefined,
    private readonly pending: Promise<void>[],
  ) {
    if (size >= POOL_MIN && pool) this.pooled = pool.file(size);
    else if (size > INLINE_MAX) this.hasher = new FsVerityHasher();
    else if (size > 0) this.small = [];
  }
  data(chunk: Buffer): void {
    if (this.pooled) this.pooled.data(chunk);
    else if (this.hasher) this.hasher.update(chunk);
    else this.small?.push(Buffer.from(chunk));
  }
  end(): void {
    if (this.pooled) {
      const p = this.pooled.end().then((d) => {
        this.inode.digest = d;
        this.inode.payload = payloadOf(d);
      });
      p.catch(() => {}); // reported by end(); never an unhandled rejection if the scan is abandoned
      this.pending.push(p);
    } else if (this.hasher) {
      const d = this.hasher.digest();
      this.inode.digest = d;
      this.inode.payload = payloadOf(d);
    } else if (this.small) this.inode.content = Buffer.concat(this.small);
  }
}

/**
 * A layer scanner: feed the tar's bytes with `push` (synchronous), then `end()` gives the scan
 * once every file is hashed. With a hash pool, await `belowLimit()` between pushes to bound the
 * bytes queued for the worker.
 */
export interface LayerScanner {
  push(chunk: Buffer): void;
  belowLimit(): Promise<void> | undefined;
  end(): Promise<LayerScan>;
}

/** Start scanning one layer tar (uncompressed bytes); `what` names the layer in errors. */
export function createLayerScanner(
  what: string,
  opts: Pick<ImageTreeOptions, 'xattrs'> & { pool?: HashPool; limits?: Partial<ImportLimits> } = {},
): LayerScanner {
  const policy = opts.xattrs ?? 'allowlist';
  // Entry names and link targets are capped as in the importers (PATH_MAX by default): a longer
  // path would give an image that no reader (ours, composefs-info, the kernel) can walk.
  const limits = resolveLimits(opts.limits);
  const scan: LayerScan = { what, ops: [], entries: 0, bytes: 0 };
  const pending: Promise<void>[] = [];
  const onEntry = (e: RawTarEntry): EntrySink | undefined => {
    scan.entries++;
    const shown = (): string => JSON.stringify(e.path.subarray(0, 200).toString('utf8'));
    checkLimit(limits, 'maxPathLength', e.path.length, `${what}: tar entry name ${shown()}`);
    checkLimit(limits, 'maxPathLength', e.linkpath.length, `${what}: link target of ${shown()}`);
    const fail = (msg: string): never => {
      throw new ComposefsSourceError(`${what}: entry ${JSON.stringify(e.path.toString('utf8'))}: ${msg}`, {
        source: what,
        path: e.path.toString('utf8'),
      });
    };
    const parts = splitEntryPath(e.path, fail);
    const base = parts[parts.length - 1];
    if (base && startsWith(base, WH)) {
      if (base.equals(WH_OPQ)) scan.ops.push({ op: 'opaque', dir: parts.slice(0, -1) });
      else if (startsWith(base, WH_META)) {
        /* aufs metadata (.wh..wh.plnk, .wh..wh.aufs…): ignored */
      } else {
        const name = base.subarray(WH.length);
        if (name.length === 0) fail('whiteout without a name');
        // `.wh..` / `.wh...` would remove the directory itself or its parent: refused, as `..` is.
        if (name.equals(DOT) || name.equals(DOTDOT)) fail(`whiteout of "${name.toString()}"`);
        scan.ops.push({ op: 'whiteout', dir: parts.slice(0, -1), name, uid: e.uid, gid: e.gid, mtimeSec: e.mtimeSec });
      }
      return undefined; // whiteout data (normally none) is skipped
    }
    if (e.kind === 'hardlink') {
      const target = splitEntryPath(e.linkpath, fail);
      scan.ops.push({ op: 'link', path: parts, target });
      return undefined;
    }
    const inode: Inode = {
      // A symlink's permissions are always 0777 on Linux, whatever the tar says: extracting the
      // layer gives that, so must the image.
      mode: e.kind === 'symlink' ? S_IFLNK | 0o777 : TYPE_BITS[e.kind]! | e.mode,
      uid: e.uid,
      gid: e.gid,
      rdev: e.kind === 'char' || e.kind === 'block' ? makedev(e.devmajor, e.devminor) : 0n,
      size: 0n,
      mtimeSec: e.mtimeSec,
      xattrs: filterXattrs(e.xattrs, policy),
    };
    if (parts.length === 0 && e.kind !== 'dir') fail('the root entry is not a directory');
    if (e.kind === 'symlink') {
      if (e.linkpath.length === 0) fail('symlink with an empty target');
      inode.payload = e.linkpath;
      inode.size = BigInt(e.linkpath.length);
    }
    scan.ops.push({ op: 'put', path: parts, inode });
    if (e.kind === 'file') {
      inode.size = BigInt(e.size);
      scan.bytes += e.size;
      return new FileSink(inode, e.size, opts.pool, pending);
    }
    return undefined;
  };
  const parser = new LayerTarParser(what, onEntry);
  return {
    push: (chunk) => parser.push(chunk),
    belowLimit: () => opts.pool?.belowLimit(),
    end: async () => {
      parser.end();
      await Promise.all(pending);
      return scan;
    },
  };
}

/**
 * Read one layer tar (uncompressed bytes) into its operations. `what` names the layer in errors.
 * The whole stream is consumed (so a diffid/digest check on it runs to its end).
 */
export async function scanLayer(
  tar: AsyncIterable<Buffer | Uint8Array | string> | Readable,
  what: string,
  opts: Pick<ImageTreeOptions, 'xattrs'> & { pool?: HashPool } = {},
): Promise<LayerScan> {
  const scanner = createLayerScanner(what, opts);
  for await (const c of tar as AsyncIterable<Buffer | Uint8Array | string>) {
    if (typeof c === 'string') throw new ComposefsSourceError(`${what}: tar stream yielded a string (read it without an encoding)`);
    scanner.push(Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength));
    const wait = scanner.belowLimit();
    if (wait) await wait;
  }
  return scanner.end();
}

/** Apply a scanned layer on top of `tree` (merged view; module comment). */
export function applyLayer(tree: BuildTree, scan: LayerScan): void {
  for (const op of scan.ops) {
    if (op.op === 'opaque') tree.clear(op.dir);
    else if (op.op === 'whiteout') tree.remove([...op.dir, op.name]);
  }
  for (const op of scan.ops) {
    switch (op.op) {
      case 'put':
        tree.put(op.path, { ...op.inode }, scan.what);
        break;
      case 'link':
        tree.link(op.path, op.target, scan.what);
        break;
      case 'whiteout':
        tree.parentOf([...op.dir, op.name], scan.what);
        break;
      case 'opaque':
        tree.parentOf([...op.dir, WH_OPQ], scan.what);
        break;
    }
  }
}

/**
 * The tree of one layer alone, whiteouts kept as overlayfs whiteouts (module comment). A hardlink
 * to a name the layer does not contain is resolved in `lower` (the merged tree of the layers
 * below) and becomes an independent copy of that inode (metadata and content digest).
 */
export function layerAloneTree(scan: LayerScan, lower?: BuildTree): BuildTree {
  const tree = new BuildTree();
  // The layer's entries first, as in the merged view, so that a name the layer whites out and
  // fills again (`.wh.d` with `d/x`, `d/` or `d/.wh..wh..opq`) is what the layer puts there.
  for (const op of scan.ops) {
    if (op.op === 'put') tree.put(op.path, { ...op.inode }, scan.what);
    else if (op.op === 'link') {
      const below = tree.lookup(op.target) ? undefined : lower?.lookup(op.target);
      if (below && !below.kids) tree.put(op.path, { ...below.inode }, scan.what);
      else tree.link(op.path, op.target, scan.what);
    }
  }
  for (const op of scan.ops) {
    if (op.op !== 'opaque') continue;
    let dir = tree.lookup(op.dir);
    if (!dir) dir = tree.put(op.dir, implicitDirInode(), scan.what);
    if (!dir.kids) {
      throw new ComposefsSourceError(`${scan.what}: opaque marker in /${op.dir.map((p) => p.toString('utf8')).join('/')}, which is not a directory`);
    }
    dir.inode.opaque = true;
  }
  // Whiteouts as overlayfs stores them: a removed name is a char device 0/0; a removed name the
  // layer makes a directory again is that directory, opaque (the lower entries stay hidden); one
  // it fills with anything else needs no marker. Opacity is settled first: below an opaque
  // directory a whiteout hides nothing more, and is left out (its parent stays). It must be:
  // composefs format 1 records a directory's whiteouts with the same xattr as its opacity, so
  // mkcomposefs would write an opaque directory holding a whiteout exactly as a plain one.
  const whiteouts = scan.ops.filter((op) => op.op === 'whiteout');
  for (const op of whiteouts) {
    const there = tree.lookup([...op.dir, op.name]);
    if (there?.kids) there.inode.opaque = true;
  }
  for (const op of whiteouts) {
    const path = [...op.dir, op.name];
    if (tree.lookup(path)) continue;
    if (underOpaque(tree, op.dir)) tree.parentOf(path, scan.what);
    else tree.put(path, { mode: S_IFCHR, uid: op.uid, gid: op.gid, rdev: 0n, size: 0n, mtimeSec: op.mtimeSec, xattrs: [] }, scan.what);
  }
  return tree;
}

/** Whether directory `dir` of `tree`, or one above it, is opaque. */
function underOpaque(tree: BuildTree, dir: readonly Buffer[]): boolean {
  for (let i = 0; i <= dir.length; i++) if (tree.lookup(dir.slice(0, i))?.inode.opaque) return true;
  return false;
}

export interface ImageLayersOptions extends ImageTreeOptions {
  /** Also build each layer's own tree and hand it to `onLayerTree` (for per-layer digests). */
  onLayerTree?: (index: number, root: TreeNode) => void | Promise<void>;
  /** Progress: called after each layer. */
  onLayer?: (index: number, count: number, scan: LayerScan) => void;
}

/** Human name of layer i of an image, for messages. */
export function layerName(img: OciImage, i: number): string {
  return `layer ${i} (${img.layers[i]!.digest}) of ${img.source.location}`;
}

/**
 * The merged composefs tree of an open image: every layer read (verified: blob digest, size,
 * diffid) and applied in order, then the finalizing rules.
 */
export async function treeFromImage(img: OciImage, opts: ImageLayersOptions = {}): Promise<TreeNode> {
  const tree = new BuildTree();
  const pool = HashPool.useful() ? new HashPool() : undefined;
  try {
    for (let i = 0; i < img.layers.length; i++) {
      const what = layerName(img, i);
      const scan = await scanLayer(img.openLayer(i), what, { ...opts, ...(pool ? { pool } : {}) });
      if (opts.onLayerTree) await opts.onLayerTree(i, finalizeTree(layerAloneTree(scan, tree), { xattrs: opts.xattrs ?? 'allowlist' }, what));
      applyLayer(tree, scan);
      opts.onLayer?.(i, img.layers.length, scan);
    }
  } finally {
    await pool?.close();
  }
  return finalizeTree(tree, opts, img.source.location);
}

/** The merged tree of a sequence of layer tars (already decompressed), e.g. in tests or encapsulate. */
export async function treeFromLayerTars(
  layers: Array<AsyncIterable<Buffer | Uint8Array | string> | Readable>,
  opts: ImageTreeOptions & { what?: string } = {},
): Promise<TreeNode> {
  const tree = new BuildTree();
  for (const [i, l] of layers.entries()) applyLayer(tree, await scanLayer(l, `${opts.what ?? 'layer'} ${i}`, opts));
  return finalizeTree(tree, opts, opts.what ?? 'layers');
}
