/**
 * Compare two composefs trees and name the first differences, path by path, field by field.
 *
 * Trees come from any source (`loadTree`): a composefs image file, a dumpfile, an ostree commit
 * (`repo:PATH:REV`), an OCI image reference (`oci:…`, `oci-archive:…`, `docker://…`) or a
 * directory (`dir:PATH`, or a path that is a directory).
 *
 * What is compared, for each path present on both sides (hardlinks resolved to their inode),
 * in depth-first byte order:
 *   type → (if equal) mode (permission bits), uid, gid, mtime (sec.nsec), nlink (non-directories),
 *   size (regular files), digest (content identity: the fs-verity digest, computed for inline
 *   content), symlink target, rdev (devices), then every xattr key (value differs, or present on
 *   one side only).
 * A path on one side only is one `presence` difference (its subtree is not listed). Directory
 * sizes and backing-file paths are not compared: they depend on the writer, not on the content.
 */
import { open, stat } from 'node:fs/promises';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, type TreeNode } from '../tree/model.js';
import { UsageError } from '../errors.js';
import { fsverityDigest } from './fsverity.js';
import type { ImageTreeOptions } from './sources/image-tree.js';

export type DiffField =
  | 'presence'
  | 'type'
  | 'mode'
  | 'uid'
  | 'gid'
  | 'mtime'
  | 'nlink'
  | 'size'
  | 'digest'
  | 'symlink'
  | 'rdev'
  | 'xattr';

export interface Difference {
  /** Absolute path: UTF-8, with `\\`, control characters and non-UTF-8 bytes escaped (`\\xNN`). */
  path: string;
  field: DiffField;
  /** For `xattr`: the key. */
  key?: string;
  /** Value on side A / side B (`(absent)` when missing). */
  a: string;
  b: string;
}

export interface DiffResult {
  differences: Difference[];
  /** More differences exist beyond `max`. */
  truncated: boolean;
}

const TYPE_NAMES: Record<number, string> = {
  [S_IFREG]: 'regular file',
  [S_IFDIR]: 'directory',
  [S_IFLNK]: 'symlink',
  [S_IFCHR]: 'character device',
  [S_IFBLK]: 'block device',
  [S_IFIFO]: 'fifo',
  [S_IFSOCK]: 'socket',
};
const ABSENT = '(absent)';

export const typeName = (mode: number): string => TYPE_NAMES[mode & S_IFMT] ?? `type 0${((mode & S_IFMT) >>> 0).toString(8)}`;

/**
 * Printable rendering of bytes: the text when it is plain printable ASCII, else `0x` + hex. Text
 * that itself starts with `0x` is shown as hex too, so two different values never print alike
 * (the 4 characters `0x01` are `0x30783031`, the byte 1 is `0x01`).
 */
export function showBytes(b: Buffer): string {
  const hex = (): string => `0x${b.toString('hex')}`;
  if (b.length >= 2 && b[0] === 0x30 && b[1] === 0x78) return hex();
  for (const c of b) if (c < 0x20 || c > 0x7e) return hex();
  return b.toString('latin1');
}

// glibc's dev_t encoding (32-bit major and minor in 64 bits).
const majorOf = (rdev: bigint): bigint => ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
const minorOf = (rdev: bigint): bigint => (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);

function contentId(n: TreeNode): string {
  if (n.digest) return n.digest.toString('hex');
  if (n.content) return fsverityDigest(n.content).toString('hex');
  if (n.size === 0n) return '(empty)';
  return n.payload ? `(no digest; backing file ${showBytes(n.payload)})` : '(no digest)';
}

const hexByte = (c: number): string => `\\x${c.toString(16).padStart(2, '0')}`;

/**
 * A name as text: its UTF-8, with `\\`, control characters and bytes that are not UTF-8 escaped as
 * in dumpfiles (`\\\\`, `\\xNN`), so that two different names never print alike and a newline in
 * a name does not break the line.
 */
export function showName(b: Buffer): string {
  let out = '';
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c === 0x5c) {
      out += '\\\\';
      i++;
    } else if (c < 0x20 || c === 0x7f) {
      out += hexByte(c);
      i++;
    } else if (c < 0x80) {
      out += String.fromCharCode(c);
      i++;
    } else {
      // one UTF-8 sequence when the bytes re-encode to themselves, else one escaped byte
      const n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
      const seq = n && i + n <= b.length ? b.subarray(i, i + n) : undefined;
      const text = seq?.toString('utf8');
      if (seq && text !== undefined && Buffer.from(text).equals(seq)) {
        out += text;
        i += n;
      } else {
        out += hexByte(c);
        i++;
      }
    }
  }
  return out;
}

function joinPath(parent: string, name: Buffer): string {
  return `${parent === '/' ? '' : parent}/${showName(name)}`;
}

/** Compare two trees; stops after `max` differences (default unlimited). */
export function diffTrees(a: TreeNode, b: TreeNode, opts: { max?: number } = {}): DiffResult {
  const max = opts.max ?? Infinity;
  const out: Difference[] = [];
  let truncated = false;
  const add = (d: Difference): boolean => {
    if (out.length >= max) {
      truncated = true;
      return false;
    }
    out.push(d);
    return true;
  };

  const compareInode = (path: string, x: TreeNode, y: TreeNode): boolean => {
    const ta = x.mode & S_IFMT;
    const tb = y.mode & S_IFMT;
    if (ta !== tb) {
      add({ path, field: 'type', a: typeName(x.mode), b: typeName(y.mode) });
      return false;
    }
    const f = (field: DiffField, va: string, vb: string): boolean => va === vb || add({ path, field, a: va, b: vb });
    if (!f('mode', `0${(x.mode & 0o7777).toString(8)}`, `0${(y.mode & 0o7777).toString(8)}`)) return false;
    if (!f('uid', String(x.uid >>> 0), String(y.uid >>> 0))) return false;
    if (!f('gid', String(x.gid >>> 0), String(y.gid >>> 0))) return false;
    const mt = (n: TreeNode): string => (n.mtimeNsec ? `${n.mtimeSec}.${String(n.mtimeNsec).padStart(9, '0')}` : `${n.mtimeSec}`);
    if (!f('mtime', mt(x), mt(y))) return false;
    if (ta !== S_IFDIR && !f('nlink', String(x.nlink >>> 0), String(y.nlink >>> 0))) return false;
    if (ta === S_IFREG) {
      if (!f('size', String(x.size), String(y.size))) return false;
      if (!f('digest', contentId(x), contentId(y))) return false;
    }
    if (ta === S_IFLNK && !f('symlink', showBytes(x.payload ?? Buffer.alloc(0)), showBytes(y.payload ?? Buffer.alloc(0)))) return false;
    if ((ta === S_IFCHR || ta === S_IFBLK) && !f('rdev', `${majorOf(x.rdev)}:${minorOf(x.rdev)}`, `${majorOf(y.rdev)}:${minorOf(y.rdev)}`)) return false;
    const xa = new Map(x.xattrs.map((e) => [e.key.toString('latin1'), e.value]));
    const xb = new Map(y.xattrs.map((e) => [e.key.toString('latin1'), e.value]));
    const keys = [...new Set([...xa.keys(), ...xb.keys()])].sort();
    for (const k of keys) {
      const va = xa.get(k);
      const vb = xb.get(k);
      if (va && vb && va.equals(vb)) continue;
      const key = showName(Buffer.from(k, 'latin1'));
      if (!add({ path, field: 'xattr', key, a: va ? showBytes(va) : ABSENT, b: vb ? showBytes(vb) : ABSENT })) return false;
    }
    return true;
  };

  // Iterative depth-first pre-order walk over pairs of entries, children merged in byte order.
  const stack: [string, TreeNode | undefined, TreeNode | undefined][] = [['/', a, b]];
  while (stack.length && !truncated) {
    const [path, na, nb] = stack.pop()!;
    if (!na || !nb) {
      const n = (na ?? nb)!.resolve();
      add({ path, field: 'presence', a: na ? typeName(n.mode) : ABSENT, b: nb ? typeName(n.mode) : ABSENT });
      continue;
    }
    const x = na.resolve();
    const y = nb.resolve();
    if (!compareInode(path, x, y)) continue; // type differs (children not compared) or max reached
    if ((x.mode & S_IFMT) !== S_IFDIR) continue;
    const ka = x.children();
    const kb = y.children();
    const next: [string, TreeNode | undefined, TreeNode | undefined][] = [];
    let i = 0;
    let j = 0;
    while (i < ka.length || j < kb.length) {
      const c = i < ka.length && j < kb.length ? Buffer.compare(ka[i]!.name, kb[j]!.name) : i < ka.length ? -1 : 1;
      if (c === 0) next.push([joinPath(path, ka[i]!.name), ka[i++]!, kb[j++]!]);
      else if (c < 0) next.push([joinPath(path, ka[i]!.name), ka[i++]!, undefined]);
      else next.push([joinPath(path, kb[j]!.name), undefined, kb[j++]!]);
    }
    for (let k = next.length - 1; k >= 0; k--) stack.push(next[k]!);
  }
  return { differences: out, truncated };
}

// ---------------------------------------------------------------------------------------------
// Loading a tree from a spec

export interface LoadTreeOptions extends ImageTreeOptions {
  /** TLS verification for docker:// references. */
  tlsVerify?: boolean;
}

const LCFS_EROFS_MAGIC = 0xd078629a;

/** What kind of source a spec names (for messages). */
export type TreeSpecKind = 'commit' | 'image-ref' | 'directory' | 'erofs' | 'dumpfile';

export function describeSpec(spec: string): TreeSpecKind | 'file' {
  if (spec.startsWith('repo:')) return 'commit';
  if (/^(oci|oci-archive):/.test(spec) || spec.startsWith('docker://')) return 'image-ref';
  if (spec.startsWith('dir:')) return 'directory';
  return 'file';
}

/**
 * Load a tree from a spec: `repo:PATH:REV` (ostree commit, as `ostree checkout --composefs`
 * sees it), `oci:…`/`oci-archive:…`/`docker://…` (merged layers), `dir:PATH` or a directory
 * path, or a file: a composefs image (by its magic) or else a dumpfile.
 */
export async function loadTree(spec: string, opts: LoadTreeOptions = {}): Promise<{ root: TreeNode; kind: TreeSpecKind }> {
  const kind = describeSpec(spec);
  if (kind === 'commit') {
    const rest = spec.slice('repo:'.length);
    const colon = rest.lastIndexOf(':');
    if (colon <= 0 || colon === rest.length - 1) throw new UsageError(`invalid commit spec ${JSON.stringify(spec)}: expected repo:PATH:REV`);
    const { Repo } = await import('../ostree/repo.js');
    const { treeFromCommit } = await import('./sources/ostree-commit.js');
    const repo = Repo.open(rest.slice(0, colon));
    try {
      const root = (await treeFromCommit(repo, rest.slice(colon + 1))).root;
      if (!opts.bootVariant) return { root, kind };
      const { bootVariantOf } = await import('./sources/image-tree.js');
      return { root: bootVariantOf(root), kind };
    } finally {
      repo.close();
    }
  }
  if (kind === 'image-ref') {
    const { openImage } = await import('../oci/index.js');
    const { treeFromImage } = await import('./sources/oci-layers.js');
    const img = await openImage(spec, opts.tlsVerify === false ? { tlsVerify: false } : {});
    try {
      return { root: await treeFromImage(img, opts), kind };
    } finally {
      await img.close();
    }
  }
  const path = kind === 'directory' ? spec.slice('dir:'.length) : spec;
  const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`${path}: cannot read (${e.code ?? e.message})`, { path, code: e.code });
  });
  if (kind === 'directory' || st.isDirectory()) {
    const { treeFromDirectory } = await import('./sources/directory.js');
    return { root: await treeFromDirectory(path, opts), kind: 'directory' };
  }
  const fh = await open(path, 'r');
  let magic = -1;
  try {
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    if (bytesRead === 4) magic = b.readUInt32LE(0);
  } finally {
    await fh.close();
  }
  if (magic === LCFS_EROFS_MAGIC) {
    const { readErofsImage } = await import('./erofs/reader.js');
    return { root: await readErofsImage(path), kind: 'erofs' };
  }
  const { createReadStream } = await import('node:fs');
  const { parseDumpfile } = await import('./dumpfile/reader.js');
  return { root: await parseDumpfile(createReadStream(path, { highWaterMark: 1 << 20 }), { source: path }), kind: 'dumpfile' };
}

/** One line per difference, for people. */
export function formatDifferences(r: DiffResult): string {
  const lines = r.differences.map((d) =>
    d.field === 'xattr' ? `${d.path}: xattr ${d.key}: ${d.a} → ${d.b}` : `${d.path}: ${d.field}: ${d.a} → ${d.b}`,
  );
  if (r.truncated) lines.push('… (more differences; raise --max)');
  return lines.length ? `${lines.join('\n')}\n` : '';
}
