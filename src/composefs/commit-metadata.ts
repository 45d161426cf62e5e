/**
 * What `ostree commit --generate-composefs-metadata` does, for an existing commit: a new commit
 * with the same tree whose inline metadata gains `ostree.composefs.digest.v0` (32 raw bytes, `ay`),
 * so the digest is covered by the commit checksum and by any signature made afterwards.
 */
import { ObjectType, type Repo } from '../ostree/repo.js';
import { serializeCommit, setMetadata } from '../gvariant/ostree-types.js';
import { sha256Hex } from '../ostree/checksum.js';
import { COMPOSEFS_DIGEST_KEY_V0, commitComposefsDigest } from './from-commit.js';

const REF_BINDING_KEY = 'ostree.ref-binding';

export interface CommitComposefsResult {
  source: string;
  commit: string;
  branch: string;
  digest: string;
  parent: string | null;
}

/**
 * Write the new commit on `branch`. It keeps the source's subject, body, timestamp and other
 * metadata (so the result is reproducible), except that an `ostree.ref-binding` names `branch`;
 * its parent is the branch's current head, as `ostree commit -b` would do (none when the branch
 * does not exist yet).
 */
export async function commitWithComposefsDigest(repo: Repo, rev: string, branch: string): Promise<CommitComposefsResult> {
  repo.checkNewRef(branch);
  const src = repo.loadCommit(rev);
  const digest = await commitComposefsDigest(repo, src.checksum);
  const parent = repo.resolveRevIfExists(branch);
  let metadata = setMetadata(src.commit.metadata, COMPOSEFS_DIGEST_KEY_V0, { type: 'ay', value: digest });
  // `ostree commit -b BRANCH` binds its commit to BRANCH. A binding copied from the source names
  // the source's refs, and a pull of BRANCH would refuse the new commit.
  if (metadata.some(([k]) => k === REF_BINDING_KEY)) metadata = setMetadata(metadata, REF_BINDING_KEY, { type: 'as', value: [branch] });
  const bytes = serializeCommit({ ...src.commit, parent, metadata });
  const commit = sha256Hex(bytes);
  await repo.transaction(async (r) => {
    r.writeMetadata(ObjectType.COMMIT, commit, bytes);
    r.setRef(branch, commit);
  });
  return { source: src.checksum, commit, branch, digest: digest.toString('hex'), parent };
}
