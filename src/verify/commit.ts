/**
 * Verify a commit in a repository: ed25519 and GPG signatures, and (with `composefs`) the check
 * ostree-prepare-root performs at boot for a signed composefs (shared/specs/ostree-objects.md §6.4),
 * done offline.
 */
import type { Repo } from '../ostree/repo.js';
import { ED25519_METADATA_KEY, verifySignatures } from '../sign/ed25519.js';
import { GPG_METADATA_KEY, signaturesOf, verifyCommitGpg } from '../sign/commit-signatures.js';
import { makeReport, type Check, type VerifyReport } from './report.js';

export const COMPOSEFS_DIGEST_KEY = 'ostree.composefs.digest.v0';

export interface VerifyCommitOptions {
  /** Trusted ed25519 public keys (32 bytes each). */
  pubkeys?: Buffer[];
  /** GPG keyring directory or GnuPG home. */
  gpgKeyDir?: string;
  /** Perform prepare-root's signed-composefs check (needs pubkeys and a digest function). */
  composefs?: boolean;
  /** Recompute the composefs digest of a commit (fs-verity of the EROFS image). */
  composefsDigest?: (repo: Repo, commit: string) => Promise<Buffer>;
}

export async function verifyCommit(repo: Repo, rev: string, opts: VerifyCommitOptions): Promise<VerifyReport> {
  const { checksum, bytes, commit } = repo.loadCommit(rev);
  const checks: Check[] = [];
  const metaBytes = repo.readCommitMetaBytes(checksum);
  const meta = repo.readCommitMeta(checksum);
  const prepareRoot = Boolean(opts.composefs);

  if (prepareRoot || opts.pubkeys) {
    checks.push(
      metaBytes === null
        ? { name: 'commitmeta', status: prepareRoot ? 'fail' : 'absent', detail: `No commitmeta for commit ${checksum}`, required: prepareRoot }
        : { name: 'commitmeta', status: 'pass', detail: `${metaBytes.length} bytes, keys: ${meta!.map(([k]) => k).join(', ') || '(none)'}` },
    );
  }

  if (opts.pubkeys) {
    const sigs = signaturesOf(meta, ED25519_METADATA_KEY);
    if (sigs === null || sigs.length === 0) {
      checks.push({
        name: 'ed25519-signature',
        status: prepareRoot ? 'fail' : 'absent',
        required: true,
        detail: prepareRoot ? 'Signature validation requested, but no signatures in commit' : 'ed25519: commit have no signatures of my type',
      });
    } else {
      let r: ReturnType<typeof verifySignatures>;
      try {
        r = verifySignatures(bytes, sigs, opts.pubkeys);
      } catch (e) {
        r = { valid: false, message: `signature verification failed: ${(e as Error).message}` };
      }
      checks.push({
        name: 'ed25519-signature',
        status: r.valid ? 'pass' : 'fail',
        detail: r.valid ? r.message : prepareRoot ? `No valid (of ${sigs.length}) signatures found; ${r.message}` : r.message,
      });
    }
  }

  if (opts.gpgKeyDir) {
    const present = signaturesOf(meta, GPG_METADATA_KEY);
    if (!present || present.length === 0) {
      checks.push({ name: 'gpg-signature', status: 'absent', required: true, detail: 'GPG verification enabled, but no signatures found' });
    } else {
      const r = verifyCommitGpg(repo, checksum, opts.gpgKeyDir);
      checks.push({ name: 'gpg-signature', status: r.valid ? 'pass' : 'fail', detail: `${r.validSignatures} of ${r.signatures} valid; ${r.message.split('\n')[0]}` });
    }
  }

  if (prepareRoot || opts.composefsDigest) {
    const entry = commit.metadata.find(([k]) => k === COMPOSEFS_DIGEST_KEY)?.[1];
    const expected = entry && entry.type === 'ay' && (entry.value as Buffer).length === 32 ? (entry.value as Buffer) : null;
    if (!expected) {
      checks.push({
        name: 'composefs-digest',
        status: prepareRoot ? 'fail' : 'absent',
        required: prepareRoot,
        detail: entry
          ? `${COMPOSEFS_DIGEST_KEY} has the wrong type or size (${entry.type})`
          : prepareRoot
            ? 'Signature validation requested, but no valid digest in commit'
            : `commit has no ${COMPOSEFS_DIGEST_KEY}`,
      });
    } else if (!opts.composefsDigest) {
      checks.push({ name: 'composefs-digest', status: 'absent', required: true, detail: 'no composefs digest function available' });
    } else {
      const got = await opts.composefsDigest(repo, checksum);
      const ok = got.equals(expected);
      checks.push({
        name: 'composefs-digest',
        status: ok ? 'pass' : 'fail',
        detail: ok ? `recomputed digest ${got.toString('hex')} matches the commit` : 'Wrong fsverity digest in composefs image',
        expected: expected.toString('hex'),
        got: got.toString('hex'),
      });
    }
  }

  return makeReport(`commit ${checksum}`, checks);
}
