/**
 * What `ostree commit --generate-composefs-metadata` does, for an existing commit: a new commit
 * with the same tree whose inline metadata gains `ostree.composefs.digest.v0` (32 raw bytes, `ay`),
 * so the digest is covered by the commit checksum and by any signature made afterwards.
 */
import { ObjectType, type Repo } from '../ostree/repo.js';
import { serializeCommit, setMetadata } from '../gvariant/ostree-types.js';
import { sha256Hex } from '../ostree/checksum.js';
import { UsageError } from '../errors.js';
import { COMPOSEFS_DIGEST_KEY_V0, commitComposefsDigest } from './from-commit.js';

export interface CommitComposefsResult {
  source: string;
  commit: string;
  branch: string;
  digest: string;
  parent: string | null;
}

/**
 * Write the new commit on `branch`. It keeps the source's subject, body, timestamp and other
 * metadata (so the result is reproducible); its parent is the branch's current head, as
 * `ostree commit -b` would do (none when the branch does not exist yet).
 */
export async function commitWithComposefsDigest(repo: Repo, rev: string, branch: string): Promise<CommitComposefsResult> {
  if (!branch || branch.startsWith('/') || branch.includes('..')) throw new UsageError(`invalid branch name "${branch}"`);
  const src = repo.loadCommit(rev);
  const digest = await commitComposefsDigest(repo, src.checksum);
  const parent = repo.resolveRevIfExists(branch);
  const bytes = serializeCommit({
    ...src.commit,
    parent,
    metadata: setMetadata(src.commit.metadata, COMPOSEFS_DIGEST_KEY_V0, { type: 'ay', value: digest }),
  });
  const commit = sha256Hex(bytes);
  await repo.transaction(async (r) => {
    r.writeMetadata(ObjectType.COMMIT, commit, bytes);
    r.setRef(branch, commit);
  });
  return { source: src.checksum, commit, branch, digest: digest.toString('hex'), parent };
}
