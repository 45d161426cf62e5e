/**
 * Source: an ostree commit → the tree model, exactly as libostree (≥ 2023.4) builds it for
 * `ostree.composefs.digest.v0` (shared/specs/ostree-objects.md §6.2–§6.3):
 *
 *  - mtime 0.0 everywhere; nlink 1 for files (the writer recomputes directories);
 *  - directories: mode/uid/gid/xattrs from their dirmeta; files: from the content object;
 *  - symlinks: the target as payload (size = target length);
 *  - regular files of size > 0: payload `xx/rest.file` (the bare loose path of the content
 *    checksum), the fs-verity digest of the content, never inline data; empty files: neither;
 *  - objects shared by several paths stay separate inodes (no hardlinks);
 *  - `/usr /etc /boot /var /sysroot` are added as 0755 root directories where the root has no
 *    entry of that name (an existing entry of any type is kept).
 */
import { S_IFDIR, S_IFLNK, TreeNode, newRoot, type Xattr } from '../../tree/model.js';
import type { OstreeXattr } from '../../gvariant/ostree-types.js';
import type { Repo } from '../../ostree/repo.js';
import { FileDigests, payloadPathOf } from './file-digests.js';

export const OSTREE_MOUNT_POINTS = ['usr', 'etc', 'boot', 'var', 'sysroot'];

export interface CommitTreeOptions {
  /** Compute fs-verity digests of file content (libostree's verity=YES). Default true. */
  verity?: boolean;
  /** Called with the number of files digested so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

const toXattrs = (xs: OstreeXattr[]): Xattr[] => xs.map((x) => ({ key: x.name, value: x.value }));


/** Build the composefs tree of a commit. `source` of each file node is its content checksum. */
export async function treeFromCommit(repo: Repo, rev: string, opts: CommitTreeOptions = {}): Promise<{ root: TreeNode; commit: string }> {
  const commit = repo.loadCommit(rev);
  const root = newRoot();
  const nodes = new Map<string, TreeNode>([['/', root]]);
  const regular: Array<{ node: TreeNode; checksum: string }> = [];
  // Headers are loaded once per object even when many paths share it.
  const headerCache = new Map<string, ReturnType<Repo['readFileHeader']>>();

  // Loose objects (bare modes) are hashed by worker threads while the walk goes on.
  const digests = opts.verity !== false ? new FileDigests(repo, opts.onProgress) : undefined;
  for (const e of repo.walk(commit)) {
    if (e.kind === 'dir') {
      const node = nodes.get(e.path)!;
      node.mode = e.dirmeta.mode;
      node.uid = e.dirmeta.uid;
      node.gid = e.dirmeta.gid;
      node.xattrs = toXattrs(e.dirmeta.xattrs);
      const base = e.path === '/' ? '' : e.path;
      for (const d of e.dirtree.dirs) {
        const child = new TreeNode(Buffer.from(d.name), S_IFDIR);
        node.addChild(child);
        nodes.set(`${base}/${d.name}`, child);
      }
      continue;
    }
    let hs = headerCache.get(e.checksum);
    if (!hs) headerCache.set(e.checksum, (hs = repo.readFileHeader(e.checksum)));
    const { header: h, size } = hs;
    const slash = e.path.lastIndexOf('/');
    const parent = nodes.get(e.path.slice(0, slash) || '/')!;
    const node = new TreeNode(Buffer.from(e.path.slice(slash + 1)), h.mode);
    node.uid = h.uid;
    node.gid = h.gid;
    node.xattrs = toXattrs(h.xattrs);
    node.source = e.checksum;
    if ((h.mode & 0o170000) === S_IFLNK) {
      node.payload = Buffer.from(h.symlinkTarget);
      node.size = BigInt(node.payload.length);
    } else {
      node.size = BigInt(size);
      if (size > 0) {
        node.payload = Buffer.from(payloadPathOf(e.checksum));
        regular.push({ node, checksum: e.checksum });
        digests?.add(e.checksum, size);
      }
    }
    parent.addChild(node);
  }

  for (const name of OSTREE_MOUNT_POINTS) {
    if (!root.getChild(name)) root.addChild(new TreeNode(Buffer.from(name), S_IFDIR | 0o755));
  }

  if (digests) {
    const byChecksum = await digests.finish();
    for (const r of regular) r.node.digest = byChecksum.get(r.checksum)!;
  }
  return { root, commit: commit.checksum };
}
