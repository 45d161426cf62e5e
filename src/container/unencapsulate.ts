/**
 * unencapsulate: an ostree container image → the ostree commit it carries, with its detached
 * metadata (shared/specs/ostree-container-format.md §2, §3.2, §5.2).
 *
 * The image must be an ostree image: config label `ostree.final-diffid` names the last ostree
 * layer; layer 0 is the commit layer, layers 1…final are content chunks, and any layer after it
 * is a derived (non-ostree) layer, which this command refuses. Every layer is read through the
 * OCI module's verified streams (blob digest and size, then diffid), and through the strict
 * importer in tar-import.ts (every object re-hashed, verifying libostree writes, completeness).
 * All of it, and the optional ref, happens in one repository transaction: any error aborts it,
 * leaving no objects, no commit and no ref behind.
 */
import type { CommitmetaMergeSummary } from '../sign/commit-signatures.js';
import { openImage, type ImageReference, type OciImage, type OpenImageOptions } from '../oci/index.js';
import type { Repo } from '../ostree/repo.js';
import { LABEL_COMMIT, LABEL_FINAL_DIFFID } from './encapsulate.js';
import { CommitVerificationError, NotOstreeImageError } from './errors.js';
import { CommitImporter, commitmetaMergeNotes, type ImportProgress, type ImportStats } from './tar-import.js';
import type { ImportLimits } from '../limits.js';
import { crashPoint } from '../testhooks.js';

export interface UnencapsulateOptions extends OpenImageOptions {
  /** Set this ref to the imported commit (inside the transaction). */
  ref?: string;
  /** Fail unless the image holds exactly this commit. */
  verifyCommit?: string;
  /** Fail unless the image carries detached metadata for the commit. */
  requireCommitmeta?: boolean;
  /** Caps on hostile input (src/limits.ts); unset ones come from OSTREE_OCI_LIMITS and the defaults. */
  limits?: Partial<ImportLimits>;
  onProgress?: (p: UnencapsulateProgress) => void;
}

export interface UnencapsulateProgress extends ImportProgress {
  layers: number;
}

export interface UnencapsulateResult {
  commit: string;
  manifestDigest: string;
  /** Whether the image carried detached metadata (now stored with the commit). */
  commitmeta: boolean;
  commitmetaSize: number;
  /**
   * The repository already had detached metadata for the commit and the image's differs: nothing
   * stored is lost; what the image added and which stored values were kept (see README).
   */
  commitmetaMerge?: CommitmetaMergeSummary;
  /** Human-readable notes (the commitmeta merge). */
  notes?: string[];
  ref?: string;
  /** Number of ostree layers imported (commit layer + chunks). */
  layers: number;
  stats: ImportStats;
}

export interface OstreeLayout {
  /** Index of the commit layer (always 0). */
  commitLayer: number;
  /** Indices of the content chunk layers. */
  chunks: number[];
  /** Indices of derived (non-ostree) layers after `ostree.final-diffid`. */
  derived: number[];
}

/** ostree-ext's `parse_manifest_layout`: where the ostree layers are. */
export function parseOstreeLayout(img: OciImage): OstreeLayout {
  const where = `image ${img.manifestDigest} in ${img.source.location}`;
  const labels = img.config.config?.Labels ?? {};
  const final = labels[LABEL_FINAL_DIFFID];
  if (final === undefined) {
    throw new NotOstreeImageError(`${where}: no ${LABEL_FINAL_DIFFID} label found, not an ostree encapsulated container`, {
      labels: Object.keys(labels),
    });
  }
  const hits = img.diffIds.flatMap((d, i) => (d === final ? [i] : []));
  if (hits.length === 0) throw new NotOstreeImageError(`${where}: ${LABEL_FINAL_DIFFID} ${final} is not among the image's diff_ids`);
  if (hits.length > 1) throw new NotOstreeImageError(`${where}: multiple layers have diffid ${final} (${LABEL_FINAL_DIFFID})`);
  const idx = hits[0]!;
  if (img.layers.length === 0) throw new NotOstreeImageError(`${where}: image has no layers`);
  return {
    commitLayer: 0,
    chunks: Array.from({ length: idx }, (_, i) => i + 1),
    derived: Array.from({ length: img.layers.length - idx - 1 }, (_, i) => idx + 1 + i),
  };
}

/**
 * Import the ostree commit (and its commitmeta) of the image `imgref` into `repo`. Returns the
 * commit checksum; see the module comment for what is verified.
 */
export async function unencapsulate(repo: Repo, imgref: string | ImageReference, opts: UnencapsulateOptions = {}): Promise<UnencapsulateResult> {
  const openOpts: OpenImageOptions = {};
  if (opts.tlsVerify !== undefined) openOpts.tlsVerify = opts.tlsVerify;
  if (opts.tmpDir !== undefined) openOpts.tmpDir = opts.tmpDir;
  if (opts.authFile !== undefined) openOpts.authFile = opts.authFile;
  if (opts.platform !== undefined) openOpts.platform = opts.platform;
  // Before anything is fetched or staged: libostree checks the name only when the transaction
  // commits, after the objects are already in the store.
  if (opts.ref !== undefined) repo.checkNewRef(opts.ref);
  const img = await openImage(imgref, openOpts);
  try {
    const where = `image ${img.manifestDigest} in ${img.source.location}`;
    const layout = parseOstreeLayout(img);
    if (layout.derived.length) {
      throw new NotOstreeImageError(`${where}: image has ${layout.derived.length} non-ostree layers (derived images are not supported by unencapsulate)`);
    }
    const labelCommit = img.config.config?.Labels?.[LABEL_COMMIT];
    if (opts.verifyCommit && labelCommit !== undefined && labelCommit !== opts.verifyCommit) {
      throw new CommitVerificationError(`${where}: label ${LABEL_COMMIT} is ${labelCommit}, expected ${opts.verifyCommit}`, {
        expected: opts.verifyCommit,
        label: labelCommit,
      });
    }
    const total = 1 + layout.chunks.length;
    const layerName = (i: number): string => `layer ${i} (${img.layers[i]!.digest}) of ${img.source.location}`;
    const imported = await repo.transaction(async () => {
      const importer = new CommitImporter(repo, {
        ...(opts.verifyCommit ? { verifyCommit: opts.verifyCommit } : {}),
        ...(opts.requireCommitmeta ? { requireCommitmeta: true } : {}),
        ...(opts.limits ? { limits: opts.limits } : {}),
        ...(opts.onProgress ? { onProgress: (p: ImportProgress) => opts.onProgress!({ ...p, layers: total }) } : {}),
      });
      const layerOpts = opts.limits ? { limits: opts.limits } : {};
      await importer.importLayer(img.openLayer(layout.commitLayer, layerOpts), 'commit', layerName(layout.commitLayer));
      if (labelCommit !== undefined && labelCommit !== importer.checksum) {
        throw new CommitVerificationError(`${where}: label ${LABEL_COMMIT} is ${labelCommit}, but the commit layer holds ${importer.checksum}`, {
          label: labelCommit,
          commit: importer.checksum,
        });
      }
      for (const i of layout.chunks) await importer.importLayer(img.openLayer(i, layerOpts), 'object-set', layerName(i));
      const r = await importer.finish();
      crashPoint();
      if (opts.ref !== undefined) repo.setRef(opts.ref, r.checksum);
      crashPoint();
      return r;
    });
    const result: UnencapsulateResult = {
      commit: imported.checksum,
      manifestDigest: img.manifestDigest,
      commitmeta: imported.commitmeta !== null,
      commitmetaSize: imported.commitmeta?.length ?? 0,
      layers: total,
      stats: imported.stats,
    };
    if (imported.commitmetaMerge) {
      result.commitmetaMerge = imported.commitmetaMerge;
      result.notes = commitmetaMergeNotes(imported.checksum, imported.commitmetaMerge);
    }
    if (opts.ref !== undefined) result.ref = opts.ref;
    return result;
  } finally {
    await img.close();
  }
}
