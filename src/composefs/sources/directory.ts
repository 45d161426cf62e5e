/**
 * Source: a directory on disk (e.g. an extracted container image) → the composefs tree, with the
 * same rules as the OCI-layer source (image-tree.ts), so that a faithful extraction of an image
 * gives the same digest as the image's layers:
 *
 *  - recursive walk without following symlinks; names as raw bytes;
 *  - `lstat`: mode, uid, gid, rdev (devices), size, mtime in whole seconds (nanoseconds dropped);
 *  - hardlinks detected by (st_dev, st_ino): all names of one inode share it, nlink = the number
 *    of names found inside the tree (links to outside the tree do not count);
 *  - regular files: 1..64 bytes inline, larger ones fs-verity digest (read from disk, large files
 *    on worker threads) and payload `hh/rest`;
 *  - xattrs: read with `getfattr` (one process for the whole tree, no dereferencing), filtered by
 *    the xattr policy;
 *  - the root directory's own metadata is the root (policy `image`), or see `rootMetadata`.
 *
 * Only names and metadata are kept; file contents are hashed as they are read, one file at a time.
 */
import { spawn } from 'node:child_process';
import { lstat } from 'node:fs/promises';
import { lstatSync, readFileSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { BigIntStats } from 'node:fs';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type TreeNode, type Xattr } from '../../tree/model.js';
import { FileDigestQueue } from '../fsverity.js';
import { ComposefsSourceError } from './errors.js';
import { BuildTree, Entry, INLINE_MAX, filterXattrs, finalizeTree, keepXattr, type ImageTreeOptions, type Inode, type XattrPolicy } from './image-tree.js';
import { payloadOf } from './oci-layers.js';

export interface DirectoryTreeOptions extends ImageTreeOptions {
  onProgress?: (filesDone: number, filesTotal: number) => void;
}

const NS = 1_000_000_000n;
const floorSeconds = (ns: bigint): bigint => (ns >= 0n || ns % NS === 0n ? ns / NS : ns / NS - 1n);

/** Undo getfattr's quoting: `\\` → `\`, `\ooo` → that byte. */
function unquote(s: Buffer): Buffer {
  if (!s.includes(0x5c)) return s;
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === 0x5c && s[i + 1] === 0x5c) {
      out.push(0x5c);
      i++;
    } else if (c === 0x5c && i + 3 < s.length && /^[0-7]{3}$/.test(s.subarray(i + 1, i + 4).toString('latin1'))) {
      out.push(parseInt(s.subarray(i + 1, i + 4).toString('latin1'), 8) & 0xff);
      i += 3;
    } else out.push(c);
  }
  return Buffer.from(out);
}

/**
 * All xattrs under `root` (absolute path), as `getfattr -R -P -h -d -m - -e hex` reports them,
 * filtered by `policy`: latin1(absolute path bytes) → xattrs.
 */
export async function readTreeXattrs(root: string, policy: XattrPolicy): Promise<Map<string, Xattr[]>> {
  const out = new Map<string, Xattr[]>();
  // stdin is a pipe closed at once rather than 'ignore': opening /dev/null (absent in some
  // chroots) would fail with the same ENOENT as a missing getfattr.
  const child = spawn('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', '--', root], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, LC_ALL: 'C' },
  });
  child.stdin.on('error', () => {}); // a getfattr that never ran has no stdin to close
  child.stdin.end();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 8192) stderr += d.toString();
  });
  const exit = new Promise<number>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        new ComposefsSourceError(
          e.code === 'ENOENT'
            ? `${root}: reading xattrs needs getfattr (Debian package "attr"), which was not found`
            : `${root}: cannot run getfattr: ${e.message}`,
          { path: root },
        ),
      ),
    );
    child.on('close', (code) => resolve(code ?? -1));
  });
  // Awaited after stdout ends; a spawn failure arrives earlier and must not count as unhandled.
  exit.catch(() => {});
  let pending: Buffer = Buffer.alloc(0);
  let current: Xattr[] | undefined;
  const line = (l: Buffer): void => {
    if (l.length === 0) {
      current = undefined;
      return;
    }
    if (l.subarray(0, 8).toString('latin1') === '# file: ') {
      const path = unquote(l.subarray(8));
      current = [];
      out.set(path.toString('latin1'), current);
      return;
    }
    if (l[0] === 0x23 || !current) return;
    const eq = l.indexOf(0x3d);
    const k = unquote(eq < 0 ? l : l.subarray(0, eq));
    if (!keepXattr(k, policy)) return;
    let v = eq < 0 ? '' : l.subarray(eq + 1).toString('latin1');
    if (v.startsWith('0x')) v = v.slice(2);
    else if (v !== '') throw new ComposefsSourceError(`${root}: unexpected getfattr value encoding: ${l.toString('utf8')}`);
    current.push({ key: Buffer.from(k), value: Buffer.from(v, 'hex') });
  };
  try {
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let start = 0;
      for (let nl = pending.indexOf(0x0a); nl >= 0; nl = pending.indexOf(0x0a, start)) {
        line(pending.subarray(start, nl));
        start = nl + 1;
      }
      pending = Buffer.from(pending.subarray(start));
    }
    if (pending.length) line(pending);
  } catch (err) {
    child.kill();
    throw err;
  }
  const code = await exit;
  if (code !== 0) {
    throw new ComposefsSourceError(`${root}: getfattr failed (exit ${code}): ${stderr.trim().split('\n').slice(0, 3).join('; ')}`, {
      path: root,
    });
  }
  for (const [k, v] of out) if (v.length === 0) out.delete(k);
  return out;
}

function inodeFromStat(st: BigIntStats, xattrs: Xattr[]): Inode {
  const mode = Number(st.mode);
  const t = mode & S_IFMT;
  return {
    mode,
    uid: Number(st.uid),
    gid: Number(st.gid),
    rdev: t === S_IFCHR || t === S_IFBLK ? st.rdev : 0n,
    size: t === S_IFREG ? st.size : 0n,
    mtimeSec: floorSeconds(st.mtimeNs),
    xattrs,
  };
}

const SLASH = Buffer.from('/');

/** A path for fs calls: the string when the bytes are UTF-8, else the Buffer (fs accepts both). */
const fsPath = (b: Buffer): string => {
  const s = b.toString('utf8');
  return Buffer.from(s).equals(b) ? s : (b as unknown as string);
};

/** Read the directory `dir` into a composefs tree (rules: module comment and image-tree.ts). */
export async function treeFromDirectory(dir: string, opts: DirectoryTreeOptions = {}): Promise<TreeNode> {
  const policy = opts.xattrs ?? 'allowlist';
  const fail = (path: Buffer, msg: string, err?: unknown): never => {
    const e = err as NodeJS.ErrnoException | undefined;
    throw new ComposefsSourceError(`${path.toString('utf8')}: ${msg}${e ? ` (${e.code ?? e.message})` : ''}`, {
      path: path.toString('utf8'),
      ...(e?.code ? { code: e.code } : {}),
    });
  };
  let rootStat: BigIntStats;
  let rootPath = resolvePath(dir);
  try {
    rootPath = realpathSync(rootPath); // the directory itself may be reached through a symlink
    rootStat = await lstat(rootPath, { bigint: true });
  } catch (err) {
    return fail(Buffer.from(rootPath), 'cannot read directory', err);
  }
  if ((Number(rootStat.mode) & S_IFMT) !== S_IFDIR) fail(Buffer.from(rootPath), 'not a directory');

  const xattrs = await readTreeXattrs(rootPath, policy);
  const xattrsOf = (abs: Buffer): Xattr[] => filterXattrs(xattrs.get(abs.toString('latin1')) ?? [], policy);

  const tree = new BuildTree(inodeFromStat(rootStat, xattrsOf(Buffer.from(rootPath))));
  const byIno = new Map<string, Inode>();
  const files: { path: Buffer; inode: Inode }[] = [];

  // Directory walk (iterative, synchronous metadata calls: much faster than one promise per
  // entry); every entry is lstat'ed, nothing is followed.
  const stack: { abs: Buffer; entry: Entry }[] = [{ abs: Buffer.from(rootPath), entry: tree.root }];
  while (stack.length) {
    const { abs, entry } = stack.pop()!;
    let names: Buffer[];
    try {
      names = readdirSync(abs, { encoding: 'buffer' });
    } catch (err) {
      return fail(abs, 'cannot read directory', err);
    }
    for (const name of names) {
      const p = Buffer.concat([abs, SLASH, name]);
      let st: BigIntStats;
      try {
        st = lstatSync(p, { bigint: true });
      } catch (err) {
        return fail(p, 'cannot stat', err);
      }
      const t = Number(st.mode) & S_IFMT;
      const k = name.toString('latin1');
      if (t !== S_IFDIR && st.nlink > 1n) {
        const id = `${st.dev}:${st.ino}`;
        const seen = byIno.get(id);
        if (seen) {
          entry.kids!.set(k, new Entry(seen));
          continue;
        }
        const inode = inodeFromStat(st, xattrsOf(p));
        byIno.set(id, inode);
        entry.kids!.set(k, new Entry(inode));
        if (t === S_IFREG && st.size > 0n) files.push({ path: p, inode });
        else if (t === S_IFLNK) files.push({ path: p, inode });
        continue;
      }
      const inode = inodeFromStat(st, xattrsOf(p));
      const child = new Entry(inode);
      entry.kids!.set(k, child);
      if (t === S_IFDIR) stack.push({ abs: p, entry: child });
      else if ((t === S_IFREG && st.size > 0n) || t === S_IFLNK) files.push({ path: p, inode });
    }
  }

  // Contents: symlink targets and inline data read here; fs-verity digests of the other regular
  // files computed by worker threads (FileDigestQueue: batches of small files, large files split),
  // while this thread goes on reading.
  let done = 0;
  const queue = new FileDigestQueue();
  const hashed: Array<{ path: Buffer; inode: Inode }> = [];
  for (const { path, inode } of files) {
    try {
      if ((inode.mode & S_IFMT) === S_IFLNK) {
        const target = readlinkSync(path, { encoding: 'buffer' });
        inode.payload = target;
        inode.size = BigInt(target.length);
      } else if (inode.size <= BigInt(INLINE_MAX)) {
        inode.content = readSmall(path, Number(inode.size));
      } else {
        const p = fsPath(path);
        queue.add(typeof p === 'string' ? p : path, Number(inode.size));
        hashed.push({ path, inode });
        continue;
      }
    } catch (err) {
      if (err instanceof ComposefsSourceError) throw err;
      fail(path, 'cannot read', err);
    }
    opts.onProgress?.(++done, files.length);
  }
  let digests: Buffer[];
  try {
    digests = await queue.finish();
  } catch (err) {
    // The worker names the file in its message; say which tree it belongs to.
    throw new ComposefsSourceError(`${rootPath}: cannot read a file: ${(err as Error).message}`, { path: rootPath });
  }
  hashed.forEach(({ inode }, i) => setDigest(inode, digests[i]!));
  opts.onProgress?.(files.length, files.length);
  return finalizeTree(tree, opts, rootPath);
}

function setDigest(inode: Inode, d: Buffer): void {
  inode.digest = d;
  inode.payload = payloadOf(d);
}

function readSmall(path: Buffer, size: number): Buffer {
  const data = readFileSync(path);
  if (data.length !== size) {
    throw new ComposefsSourceError(`${path.toString('utf8')}: changed size while reading (${size} → ${data.length} bytes)`, {
      path: path.toString('utf8'),
    });
  }
  return data;
}
