/**
 * Migrate an ostree commit into a composefs repository (composefs-oci layout):
 *
 *  1. build the commit's tree as libostree does (sources/ostree-commit.ts: mount points, mtime 0,
 *     no hardlinks) with each regular file's fs-verity digest;
 *  2. verify the commit before anything is written: its ed25519 signature (with `pubkeys`) and its
 *     `ostree.composefs.digest.v0` (when present) against the digest of the ostree-form image of
 *     that same tree — a failed check stops the migration (`MigrateVerifyError`);
 *  3. store every regular file larger than 64 bytes as an object named by its fs-verity digest
 *     (copied through a temporary file, hashed on the way and compared; existing objects are
 *     re-verified and reused);
 *  4. rewrite the tree into the composefs-oci form: files ≤ 64 bytes inline, larger ones with
 *     redirect `hh/<rest>` and their metacopy digest; write it as EROFS (composefs format 0..1,
 *     mkcomposefs-compatible) into the object store;
 *  5. with `oci`: encapsulate the commit (commitmeta kept) as an OCI image with the project's
 *     composefs annotations (composefs/image-digests.ts: `containers.composefs-digest` of the
 *     merged layer tree and one digest per layer) into a scratch layout, store that image as
 *     splitstreams (see oci.ts), and copy it to the `oci` destination;
 *  6. sync, then link the `oci/<tag>` ref, `images/<hex>` and `images/refs/<name>`.
 *
 * A run that is killed leaves only temporary files (removed by the next writer or gc) and
 * complete, verified objects that the next run reuses; names are published last.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { buildErofs } from '../composefs/erofs/writer.js';
import { imageDigest } from '../composefs/from-commit.js';
import { ANNOTATION_COMPOSEFS_DIGEST } from '../composefs/image-digests.js';
import { rewriteManifest } from '../oci/image.js';
import { treeFromCommit } from '../composefs/sources/ostree-commit.js';
import { encapsulate, type EncapsulateOptions } from '../container/index.js';
import { OstreeOciError } from '../errors.js';
import type { Repo } from '../ostree/repo.js';
import { isLnk, isReg, walk, type TreeNode } from '../tree/model.js';
import { verifyCommit, COMPOSEFS_DIGEST_KEY } from '../verify/commit.js';
import type { Check, VerifyReport } from '../verify/report.js';
import { MigrateSourceError, MigrateVerifyError } from './errors.js';
import { payloadOf, publishImage, storeImage } from './images.js';
import { ObjectStore, type StoreStats } from './objects.js';
import { storeOciImage, type OciStoreResult } from './oci.js';
import { checkLinkSlot, checkRefName, checkTag, encodeTag, OCI_REF_PREFIX } from './refs.js';
import { CfsRepo } from './repository.js';
import { INLINE_CONTENT_MAX } from './tar-split.js';
import { crashPoint } from '../testhooks.js';


export type MigratePhase = 'tree' | 'verify' | 'objects' | 'image' | 'oci';

export interface MigrateProgress {
  phase: MigratePhase;
  done: number;
  total: number;
}

export interface MigrateOptions {
  /** images/refs/<name> (required; relative path, may contain `/`). */
  name: string;
  /** Trusted ed25519 public keys: the commit's signature must verify with one of them. */
  pubkeys?: Buffer[];
  /** Also encapsulate as an OCI image and store it as splitstreams tagged `tag`. */
  oci?: { imgref: string; tag: string; encapsulate?: Omit<EncapsulateOptions, 'onProgress'> };
  /** Concurrent object copies (default 4 for bare repos, 1 for archive). */
  jobs?: number;
  /** Where the commit came from, copied into the report. */
  source?: Record<string, unknown>;
  onProgress?: (p: MigrateProgress) => void;
}

export type CheckOutcome = 'verified' | 'failed' | 'absent' | 'not-requested';

export interface MigrationReport {
  commit: string;
  source: Record<string, unknown>;
  target: string;
  name: string;
  image: { digest: string; path: string; ref: string; size: number; written: boolean };
  files: { entries: number; directories: number; regular: number; symlinks: number; other: number; inline: number; external: number; bytes: number };
  objects: { unique: number; written: number; reused: number; bytesWritten: number; bytesReused: number };
  verification: {
    signature: CheckOutcome;
    composefsDigest: CheckOutcome;
    outcome: VerifyReport['outcome'];
    checks: Check[];
  };
  ostreeComposefsDigest: string | null;
  oci?: OciStoreResult & {
    reference: string;
    /** The composefs annotations the image was sealed with (`layers`: per-layer digests, comma-separated). */
    annotations: Record<string, string>;
    objects: { written: number; reused: number; bytesWritten: number; bytesReused: number };
  };
  durationMs: number;
}

const outcome = (c: Check | undefined, requested: boolean): CheckOutcome =>
  !c ? (requested ? 'absent' : 'not-requested') : c.status === 'pass' ? 'verified' : c.status === 'fail' ? 'failed' : 'absent';

const diff = (a: StoreStats, b: StoreStats): StoreStats => ({
  written: b.written - a.written,
  reused: b.reused - a.reused,
  bytesWritten: b.bytesWritten - a.bytesWritten,
  bytesReused: b.bytesReused - a.bytesReused,
});

async function readAllStream(s: AsyncIterable<Uint8Array>, limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of s) {
    parts.push(Buffer.from(c));
    n += c.length;
    if (n > limit) throw new MigrateSourceError(`${what}: more than ${limit} bytes`);
  }
  return Buffer.concat(parts, n);
}

/** Wrap an error from the source repository with what was being read. */
function sourceError(e: unknown, what: string): Error {
  // Our typed errors (a bad rev is a UsageError…) pass through; libostree and fs errors get context.
  if (e instanceof OstreeOciError && e.constructor !== OstreeOciError) return e;
  const msg = (e as Error)?.message ?? String(e);
  return new MigrateSourceError(`${what}: ${msg}`, { cause: msg });
}

export async function migrateCommit(repo: Repo, rev: string, cfsPath: string, opts: MigrateOptions): Promise<MigrationReport> {
  const t0 = Date.now();
  checkRefName(opts.name, 'image name');
  if (opts.oci) checkTag(opts.oci.tag);
  const progress = (phase: MigratePhase, done: number, total: number): void => opts.onProgress?.({ phase, done, total });

  // 1. The tree, with fs-verity digests of all regular files.
  let commit: string;
  let root: TreeNode;
  try {
    commit = repo.loadCommit(rev).checksum;
  } catch (e) {
    throw sourceError(e, `cannot load commit "${rev}" from ${repo.path}`);
  }
  try {
    ({ root } = await treeFromCommit(repo, commit, { onProgress: (d, t) => progress('tree', d, t) }));
  } catch (e) {
    throw sourceError(e, `cannot read commit ${commit} from ${repo.path} (missing or corrupted objects?)`);
  }

  // 2. Verify before writing anything.
  progress('verify', 0, 1);
  let ostreeDigest: string | null = null;
  const report = await verifyCommit(repo, commit, {
    ...(opts.pubkeys ? { pubkeys: opts.pubkeys } : {}),
    composefsDigest: async () => {
      const d = imageDigest(buildErofs(root, { minVersion: 0, maxVersion: 1 }));
      ostreeDigest = d.toString('hex');
      return d;
    },
  });
  progress('verify', 1, 1);
  const sig = report.checks.find((c) => c.name === 'ed25519-signature');
  const cfsCheck = report.checks.find((c) => c.name === 'composefs-digest');
  if (report.outcome === 'failed') {
    const bad = report.checks.filter((c) => c.status === 'fail' || (c.status === 'absent' && c.required));
    throw new MigrateVerifyError(`commit ${commit} failed verification, nothing migrated: ${bad.map((c) => `${c.name}: ${c.detail}`).join('; ')}`, {
      commit,
      checks: report.checks,
    });
  }

  // Inventory: external objects (unique by digest) and small files read inline.
  const files = { entries: 0, directories: 0, regular: 0, symlinks: 0, other: 0, inline: 0, external: 0, bytes: 0 };
  const external = new Map<string, { checksum: string; size: number; path: string }>();
  const small: Array<{ node: TreeNode; checksum: string; size: number }> = [];
  for (const n of walk(root)) {
    if (n === root) continue;
    files.entries++;
    if (n.isDir) files.directories++;
    else if (isLnk(n.mode)) files.symlinks++;
    else if (isReg(n.mode)) {
      files.regular++;
      const size = Number(n.size);
      files.bytes += size;
      const checksum = n.source as string;
      if (size > INLINE_CONTENT_MAX) {
        files.external++;
        const hex = n.digest!.toString('hex');
        if (!external.has(hex)) external.set(hex, { checksum, size, path: n.pathString() });
      } else {
        files.inline++;
        if (size > 0) small.push({ node: n, checksum, size });
      }
    } else files.other++;
  }

  const openContent = (checksum: string, path: string): Readable => {
    try {
      const loose = repo.loosePayloadPath(checksum);
      if (loose) return createReadStream(loose, { highWaterMark: 1 << 20 });
      const f = repo.readFile(checksum);
      if (!f.stream) throw new Error('not a regular file');
      return f.stream;
    } catch (e) {
      throw sourceError(e, `cannot read content object ${checksum} (${path}) from ${repo.path}`);
    }
  };

  const cfs = await CfsRepo.init(cfsPath);
  const release = await cfs.lockWriter();
  try {
    // A name clashing with existing refs is refused before any object is written.
    await checkLinkSlot(cfs, `images/refs/${opts.name}`);
    if (opts.oci) await checkLinkSlot(cfs, `streams/refs/${OCI_REF_PREFIX}${encodeTag(opts.oci.tag)}`);
    const store = new ObjectStore(cfs);

    // 3. Objects.
    const todo = [...external.entries()];
    let next = 0;
    let done = 0;
    let failed = false;
    const lane = async (): Promise<void> => {
      while (next < todo.length && !failed) {
        const [hex, f] = todo[next++]!;
        try {
          await store.storeKnown(hex, () => openContent(f.checksum, f.path), `content object ${f.checksum} (${f.path}) of ${repo.path}`);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw sourceError(e, `content object ${f.checksum} (${f.path}) is missing from ${repo.path}`);
          throw e;
        }
        progress('objects', ++done, todo.length);
        crashPoint();
      }
    };
    const lanes = Math.max(1, opts.jobs ?? (repo.loosePayloads ? 4 : 1));
    // After a failure the other lanes take no new object and the error waits for the writes in
    // flight, which then finish or remove their temporary files: none is left behind.
    const settled = await Promise.allSettled(
      Array.from({ length: Math.min(lanes, Math.max(1, todo.length)) }, () =>
        lane().catch((e: unknown) => {
          failed = true;
          throw e;
        }),
      ),
    );
    const firstFailure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (firstFailure) throw firstFailure.reason;
    const fileStats = { ...store.stats };

    // 4. composefs-oci form of the tree.
    for (const s of small) {
      let content: Buffer;
      try {
        content = await readAllStream(openContent(s.checksum, s.node.pathString()), INLINE_CONTENT_MAX, `content object ${s.checksum}`);
      } catch (e) {
        throw sourceError(e, `cannot read content object ${s.checksum} (${s.node.pathString()}) from ${repo.path}`);
      }
      if (content.length !== s.size) throw new MigrateSourceError(`content object ${s.checksum} (${s.node.pathString()}): ${content.length} bytes, header says ${s.size}`);
      s.node.content = content;
    }
    for (const n of walk(root)) {
      if (!isReg(n.mode) || n.linkTo) continue;
      if (Number(n.size) > INLINE_CONTENT_MAX) {
        n.payload = Buffer.from(payloadOf(n.digest!.toString('hex')));
      } else {
        n.payload = undefined;
        n.digest = undefined;
        if (n.size === 0n) n.content = undefined;
      }
    }
    progress('image', 0, 1);
    const image = buildErofs(root, { minVersion: 0, maxVersion: 1 });
    const stored = await storeImage(store, image);
    crashPoint();
    progress('image', 1, 1);

    const result: MigrationReport = {
      commit,
      source: { repo: repo.path, rev, ...(opts.source ?? {}) },
      target: cfs.path,
      name: opts.name,
      image: { digest: stored.hex, path: `images/${stored.hex}`, ref: `images/refs/${opts.name}`, size: stored.size, written: stored.written },
      files,
      objects: { unique: external.size, ...fileStats },
      verification: {
        signature: outcome(sig, Boolean(opts.pubkeys)),
        composefsDigest: outcome(cfsCheck, true),
        outcome: report.outcome,
        checks: report.checks,
      },
      ostreeComposefsDigest: ostreeDigest,
      durationMs: 0,
    };

    // 5. OCI: encapsulate (commitmeta travels in the commit layer) with the composefs annotations
    // (containers.composefs-digest of the merged layer tree, per-layer digests) into a scratch
    // layout, store it, then copy it to the destination. Names are published last, so a failure
    // or an interruption before leaves no ref and the destination as it was.
    let publishOci: (() => Promise<void>) | undefined;
    if (opts.oci) {
      progress('oci', 0, 1);
      const scratch = await cfs.tempDir('oci');
      try {
        const enc = await encapsulate(repo, commit, `oci:${scratch}`, { ...(opts.oci.encapsulate ?? {}), composefs: true });
        const s0 = { ...store.stats };
        const { publish, ...oci } = await storeOciImage(store, enc.reference, opts.oci.tag, {
          onLayer: (i, n) => progress('oci', i, n),
          deferPublish: true,
        });
        publishOci = publish;
        const copied = await rewriteManifest(enc.reference, opts.oci.imgref, (a) => a);
        if (copied.manifestDigest !== enc.manifestDigest) {
          throw new OstreeOciError(`${opts.oci.imgref}: the copied manifest is ${copied.manifestDigest}, the stored one ${enc.manifestDigest}`);
        }
        result.oci = {
          ...oci,
          reference: copied.reference,
          annotations: { [ANNOTATION_COMPOSEFS_DIGEST]: enc.composefsDigest!, layers: enc.layers.map((l) => l.composefsDigest!).join(',') },
          objects: diff(s0, store.stats),
        };
      } finally {
        await cfs.removeTemp(scratch);
      }
      progress('oci', 1, 1);
    }
    // 6. Names, last.
    crashPoint();
    await publishOci?.();
    await publishImage(cfs, stored.hex, opts.name);
    crashPoint();
    result.durationMs = Date.now() - t0;
    return result;
  } finally {
    await release();
  }
}

/** One line per fact, for people. */
export function formatMigrationReport(r: MigrationReport): string {
  const v = r.verification;
  const lines = [
    `migrated commit ${r.commit} → ${r.target}`,
    `  image:   ${r.image.path} (${r.image.size} bytes, ${r.image.written ? 'written' : 'already present'}), ref ${r.image.ref}`,
    `  files:   ${r.files.entries} entries: ${r.files.directories} directories, ${r.files.regular} regular files (${r.files.bytes} bytes; ${r.files.inline} inline ≤ ${INLINE_CONTENT_MAX} bytes, ${r.files.external} external), ${r.files.symlinks} symlinks`,
    `  objects: ${r.objects.unique} unique: ${r.objects.written} written (${r.objects.bytesWritten} bytes), ${r.objects.reused} reused (${r.objects.bytesReused} bytes, re-verified)`,
    `  verification: signature ${v.signature}, ${COMPOSEFS_DIGEST_KEY} ${v.composefsDigest}`,
  ];
  if (r.oci) {
    lines.push(
      `  oci:     ${r.oci.reference} (${r.oci.manifestDigest}), tag ${r.oci.tag} → ${r.oci.ref}; ${r.oci.layers.length} layer stream(s), objects ${r.oci.objects.written} written / ${r.oci.objects.reused} reused`,
    );
  }
  return `${lines.join('\n')}\n`;
}
