/**
 * Signing and verifying commits: ed25519 in TypeScript (ostree's exact format), GPG through
 * libostree (`ostree.gpgsigs`). Signing appends to the detached metadata and keeps every other
 * key byte for byte.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Variant, VarDict } from '../gvariant/codec.js';
import { serializeMetadata } from '../gvariant/ostree-types.js';
import type { Repo } from '../ostree/repo.js';
import { UsageError } from '../errors.js';
import {
  ED25519_METADATA_KEY,
  SignatureError,
  signData,
  verifySignatures,
  type Ed25519SecretKey,
  type Ed25519VerifyResult,
} from './ed25519.js';

export const GPG_METADATA_KEY = 'ostree.gpgsigs';

/** Append `sig` to the `aay` array under `key`, keeping position and every other entry. */
export function appendSignature(meta: VarDict, key: string, sig: Buffer): VarDict {
  const i = meta.findIndex(([k]) => k === key);
  if (i < 0) return [...meta, [key, { type: 'aay', value: [sig] }]];
  const old = meta[i]![1];
  if (old.type !== 'aay') throw new SignatureError(`commitmeta key ${key} has type ${old.type}, expected aay`);
  const out = [...meta];
  out[i] = [key, { type: 'aay', value: [...(old.value as Buffer[]), sig] }];
  return out;
}

/** What merging an image's commitmeta into a stored one did (see mergeCommitmeta). */
export interface CommitmetaMerge {
  /** The merged dictionary: the stored one plus what the image adds. */
  merged: VarDict;
  /** Keys the image added, and `aay` keys (signatures) to which it added entries. */
  added: string[];
  /** Keys whose stored value was kept over the image's different one. */
  kept: string[];
}

/** What a merge did, without the merged dictionary (what importers report). */
export type CommitmetaMergeSummary = Pick<CommitmetaMerge, 'added' | 'kept'>;

const sameVariant = (a: Variant, b: Variant): boolean =>
  a.type === b.type && serializeMetadata([['k', a]]).equals(serializeMetadata([['k', b]]));

/**
 * Merge detached metadata coming with a commit the repository already has. Nothing stored is
 * lost: the commitmeta in an image is authenticated by nothing, so whoever can publish an image of
 * a known commit must not be able to remove its signatures. New keys are added; `aay` arrays
 * (signatures: `ostree.sign.*`, `ostree.gpgsigs`) gain the entries they lack; any other
 * difference keeps the stored value.
 */
export function mergeCommitmeta(stored: VarDict, incoming: VarDict): CommitmetaMerge {
  const merged = [...stored];
  const added: string[] = [];
  const kept: string[] = [];
  for (const [key, value] of incoming) {
    const i = merged.findIndex(([k]) => k === key);
    if (i < 0) {
      merged.push([key, value]);
      added.push(key);
      continue;
    }
    const old = merged[i]![1];
    if (sameVariant(old, value)) continue;
    if (old.type === 'aay' && value.type === 'aay') {
      const have = old.value as Buffer[];
      const extra = (value.value as Buffer[]).filter((e) => !have.some((h) => h.equals(e)));
      if (extra.length) {
        merged[i] = [key, { type: 'aay', value: [...have, ...extra] }];
        added.push(key);
      }
      continue; // entries only the repository has stay
    }
    kept.push(key);
  }
  return { merged, added, kept };
}

/** The `aay` signatures under `key` (first entry, like g_variant_lookup_value), or null. */
export function signaturesOf(meta: VarDict | null, key: string): Buffer[] | null {
  const v: Variant | undefined = meta?.find(([k]) => k === key)?.[1];
  if (!v) return null;
  if (v.type !== 'aay') throw new SignatureError(`commitmeta key ${key} has type ${v.type}, expected aay`);
  return v.value as Buffer[];
}

/**
 * Sign a commit with ed25519; returns the new signature. The read and write of the commitmeta
 * hold the repository's commitmeta lock (Repo.lockCommitmeta), so concurrent signers and
 * importers of ostree-oci add to it rather than overwrite each other.
 */
export async function signCommitEd25519(repo: Repo, rev: string, key: Ed25519SecretKey): Promise<{ commit: string; signature: Buffer }> {
  const { checksum, bytes } = repo.loadCommit(rev);
  const signature = signData(bytes, key);
  const unlock = await repo.lockCommitmeta();
  try {
    const meta = repo.readCommitMeta(checksum) ?? [];
    repo.writeCommitMeta(checksum, serializeMetadata(appendSignature(meta, ED25519_METADATA_KEY, signature)));
  } finally {
    unlock();
  }
  return { commit: checksum, signature };
}

/** GPG-sign through libostree (gpgme), appending to `ostree.gpgsigs` (under the commitmeta lock too). */
export async function signCommitGpg(repo: Repo, rev: string, keyId: string, homedir?: string): Promise<{ commit: string }> {
  const checksum = repo.resolveRev(rev);
  const unlock = await repo.lockCommitmeta();
  try {
    repo.native.gpgSignCommit(checksum, keyId, homedir ?? null);
  } finally {
    unlock();
  }
  return { commit: checksum };
}

/** ed25519 verification of a commit against trusted public keys. */
export function verifyCommitEd25519(repo: Repo, rev: string, keys: Buffer[]): Ed25519VerifyResult & { commit: string } {
  const { checksum, bytes } = repo.loadCommit(rev);
  const meta = repo.readCommitMeta(checksum);
  if (meta === null) return { commit: checksum, valid: false, message: `no commitmeta for commit ${checksum}` };
  const sigs = signaturesOf(meta, ED25519_METADATA_KEY);
  if (sigs === null) return { commit: checksum, valid: false, message: 'ed25519: commit have no signatures of my type' };
  return { commit: checksum, ...verifySignatures(bytes, sigs, keys) };
}

export interface GpgVerifyResult {
  commit: string;
  valid: boolean;
  signatures: number;
  validSignatures: number;
  message: string;
}

/**
 * GPG verification through libostree. `keyDir` may be a directory of `*.gpg` keyrings (what
 * libostree reads) or a GnuPG home directory, whose public keys are exported for it.
 */
export function verifyCommitGpg(repo: Repo, rev: string, keyDir: string): GpgVerifyResult {
  const checksum = repo.resolveRev(rev);
  if (!existsSync(keyDir)) throw new UsageError(`GPG key directory ${keyDir} does not exist`);
  const meta = repo.readCommitMeta(checksum);
  const sigs = signaturesOf(meta, GPG_METADATA_KEY);
  if (!sigs || sigs.length === 0) {
    return { commit: checksum, valid: false, signatures: 0, validSignatures: 0, message: 'GPG: no signatures found' };
  }
  const keyrings = readdirSync(keyDir).filter((f) => f.endsWith('.gpg') && f !== 'trustdb.gpg');
  let dir = keyDir;
  let cleanup: string | null = null;
  if (keyrings.length === 0) {
    cleanup = mkdtempSync(join(tmpdir(), 'ostree-oci-gpg-'));
    const exported = execFileSync('gpg', ['--homedir', keyDir, '--batch', '--export'], { stdio: ['ignore', 'pipe', 'ignore'] });
    writeFileSync(join(cleanup, 'exported.gpg'), exported);
    dir = cleanup;
  }
  try {
    const r = repo.native.gpgVerifyCommit(checksum, dir);
    return {
      commit: checksum,
      valid: r.valid > 0,
      signatures: r.all,
      validSignatures: r.valid,
      message: r.description.trim() || `GPG: ${r.valid} of ${r.all} signatures valid`,
    };
  } finally {
    if (cleanup) rmSync(cleanup, { recursive: true, force: true });
  }
}
