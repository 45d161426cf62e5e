/**
 * Commit → composefs image and `ostree.composefs.digest.v0`: the tree libostree builds (see
 * sources/ostree-commit.ts), written as EROFS (format 0, max 1, as libostree ≥ 2024.2), and the
 * fs-verity digest of the image bytes computed as they are produced.
 */
import type { Repo } from '../ostree/repo.js';
import type { TreeNode } from '../tree/model.js';
import { buildErofs, writeImageFile, type ErofsImage } from './erofs/writer.js';
import { ComposefsWriteError } from './errors.js';
import { FsVerityHasher } from './fsverity.js';
import { treeFromCommit, type CommitTreeOptions } from './sources/ostree-commit.js';

export const COMPOSEFS_DIGEST_KEY_V0 = 'ostree.composefs.digest.v0';

export interface ComposefsImageResult {
  commit: string;
  root: TreeNode;
  image: ErofsImage;
  /** fs-verity digest of the image bytes (32 bytes). */
  digest: Buffer;
}

/** The fs-verity digest of an image, hashing its chunks as they are generated. */
export function imageDigest(image: ErofsImage): Buffer {
  const h = new FsVerityHasher();
  for (const chunk of image.chunks()) h.update(chunk);
  return h.digest();
}

/**
 * Symlinks whose inode, xattrs and target reach 4096 bytes go to a data block (mkcomposefs 1.0.8
 * writes them so), but libostree (2026.4) aborts while building such an image: no ostree can have
 * or check a digest of it, so a digest of ours would match no deployment. Refused, naming the path.
 */
export function refuseWhatLibostreeCannotBuild(image: ErofsImage, commit: string): void {
  const spilled = image.symlinksInDataBlocks();
  if (spilled.length === 0) return;
  const more = spilled.length > 1 ? ` (and ${spilled.length - 1} more such symlink(s))` : '';
  throw new ComposefsWriteError(
    'EINVAL',
    spilled[0]!.pathString(),
    `symlink inode, xattrs and target reach 4096 bytes, so the target does not fit inline${more}; libostree cannot build a composefs image of commit ${commit}`,
  );
}

/** Build the composefs image of a commit; optionally write it to `outPath` (atomically). */
export async function composefsFromCommit(
  repo: Repo,
  rev: string,
  opts: CommitTreeOptions & { outPath?: string } = {},
): Promise<ComposefsImageResult> {
  const { root, commit } = await treeFromCommit(repo, rev, opts);
  const image = buildErofs(root, { minVersion: 0, maxVersion: 1 });
  refuseWhatLibostreeCannotBuild(image, commit);
  let digest: Buffer;
  if (opts.outPath) {
    const h = new FsVerityHasher();
    await writeImageFile(image, opts.outPath, (c) => h.update(c));
    digest = h.digest();
  } else digest = imageDigest(image);
  return { commit, root, image, digest };
}

/** Just the digest ostree stores as `ostree.composefs.digest.v0`. */
export async function commitComposefsDigest(repo: Repo, rev: string): Promise<Buffer> {
  return (await composefsFromCommit(repo, rev)).digest;
}
