/**
 * composefs digests of OCI images: compute them, write them into a manifest (seal), check them
 * (verify). Definitions (README "composefs from images and directories"):
 *
 *  - `containers.composefs-digest` (manifest annotation): the composefs digest — fs-verity digest
 *    of the EROFS image, as `mkcomposefs --print-digest` — of the image's merged tree, built from
 *    its layers with the default rules (xattrs `allowlist`, root `image`, no boot variant);
 *  - `org.ostree-oci.composefs.layer-digest` (annotation of each layer descriptor): the composefs
 *    digest of that layer alone applied to an empty tree, with the same rules, whiteouts kept as
 *    overlayfs whiteouts (`.wh.NAME` → NAME as a char device 0/0, `.wh..wh..opq` →
 *    `trusted.overlay.opaque=y` on its directory).
 *
 * Both are 64 lower-case hex digits. Sealing rewrites only the manifest (config and layer blobs
 * are copied verified and unchanged) so the new image has the same config and layers.
 */
import {
  ANNOTATION_REF_NAME,
  createImageWriter,
  MediaType,
  toImageReference,
  openImage,
  type ImageManifest,
  type OciImage,
  type OpenImageOptions,
  type Platform,
  type TransportOptions,
} from '../oci/index.js';
import { OciError } from '../oci/errors.js';
import { OstreeOciError } from '../errors.js';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { TreeNode } from '../tree/model.js';
import type { LayerResult } from '../oci/index.js';
import { makeReport, type Check, type VerifyReport } from '../verify/report.js';
import { composefsDigest } from './index.js';
import { BuildTree, finalizeTree } from './sources/image-tree.js';
import {
  applyLayer,
  createLayerScanner,
  layerAloneTree,
  layerName,
  treeFromImage,
  type ImageLayersOptions,
  type LayerScan,
} from './sources/oci-layers.js';

export const ANNOTATION_COMPOSEFS_DIGEST = 'containers.composefs-digest';
export const ANNOTATION_LAYER_DIGEST = 'org.ostree-oci.composefs.layer-digest';

export interface ImageDigests {
  /** composefs digest of the merged tree (hex). */
  merged: string;
  /** Per-layer composefs digests (hex), in layer order. */
  layers: string[];
}

export interface ImageDigestOptions {
  onLayer?: ImageLayersOptions['onLayer'];
}

/** The merged-tree and per-layer composefs digests of an open image (every layer read once). */
export async function computeImageDigests(img: OciImage, opts: ImageDigestOptions = {}): Promise<ImageDigests> {
  const layers: string[] = [];
  const merged = await treeFromImage(img, {
    onLayerTree: (_i, root: TreeNode) => void layers.push(composefsDigest(root).toString('hex')),
    ...(opts.onLayer ? { onLayer: opts.onLayer } : {}),
  });
  return { merged: composefsDigest(merged).toString('hex'), layers };
}

/** A copy of `manifest` carrying the digests (other annotations kept). */
export function annotateManifest(manifest: ImageManifest, d: ImageDigests): ImageManifest {
  if (d.layers.length !== manifest.layers.length) {
    throw new OstreeOciError(`${d.layers.length} layer digests for a manifest of ${manifest.layers.length} layers`);
  }
  const m = structuredClone(manifest) as ImageManifest;
  m.annotations = { ...(m.annotations ?? {}), [ANNOTATION_COMPOSEFS_DIGEST]: d.merged };
  m.layers = m.layers.map((l, i) => ({ ...l, annotations: { ...(l.annotations ?? {}), [ANNOTATION_LAYER_DIGEST]: d.layers[i]! } }));
  return m;
}

export interface SealOptions extends OpenImageOptions {
  srcTlsVerify?: boolean;
  destTlsVerify?: boolean;
  onLayer?: ImageLayersOptions['onLayer'];
}

export interface SealResult extends ImageDigests {
  sourceManifestDigest: string;
  manifestDigest: string;
  reference: string;
}

/**
 * Write `src` to `dst` with the composefs annotations added to its manifest. Config and layers
 * are copied verified and unchanged (skipped when `dst` already holds them, e.g. the same layout);
 * every other manifest field is kept. `dst` may equal `src` (the tag then points to the new
 * manifest).
 */
export async function sealImage(src: string, dst: string, opts: SealOptions = {}): Promise<SealResult> {
  const srcOpts: OpenImageOptions = { ...opts };
  if ((opts.srcTlsVerify ?? opts.tlsVerify) !== undefined) srcOpts.tlsVerify = (opts.srcTlsVerify ?? opts.tlsVerify)!;
  const img = await openImage(src, srcOpts);
  try {
    if (img.manifest.mediaType === MediaType.DockerManifest) {
      throw new OciError(`${img.source.location}: manifest ${img.manifestDigest} is Docker schema 2, which has no annotations (convert it to OCI first)`);
    }
    const digests = await computeImageDigests(img, opts.onLayer ? { onLayer: opts.onLayer } : {});
    const manifest = annotateManifest(img.manifest, digests);
    const dstOpts: TransportOptions = { ...opts };
    if ((opts.destTlsVerify ?? opts.tlsVerify) !== undefined) dstOpts.tlsVerify = (opts.destTlsVerify ?? opts.tlsVerify)!;
    const w = await createImageWriter(dst, dstOpts);
    try {
      for (const [i, d] of [img.manifest.config, ...img.manifest.layers].entries()) {
        const what = i === 0 ? `config ${d.digest}` : `layer ${i - 1} blob ${d.digest}`;
        await w.addBlob(() => img.openBlob(d, `${what} in ${img.source.location}`), { expected: { digest: d.digest, size: d.size }, what });
      }
      const platform: Platform = { architecture: img.config.architecture, os: img.config.os };
      if (img.config.variant) platform.variant = img.config.variant;
      // A destination without a tag keeps the source's tag (so `seal oci:D oci:D` moves it).
      const srcTag = img.manifestDescriptor.annotations?.[ANNOTATION_REF_NAME];
      const dstRef = toImageReference(dst);
      const tag = dstRef.transport !== 'docker' && dstRef.tag === undefined ? srcTag : undefined;
      const r = await w.commitManifest(manifest, { platform, ...(tag !== undefined ? { tag } : {}) });
      return { ...digests, sourceManifestDigest: img.manifestDigest, manifestDigest: r.manifestDigest, reference: r.reference };
    } catch (e) {
      await w.abort();
      throw e;
    }
  } finally {
    await img.close();
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Recompute and compare the composefs annotations of an image. One check per annotation:
 * `composefs-digest` (the manifest's) and `layer-N-composefs-digest` (each layer's); each is
 * pass (match), fail (mismatch: expected = annotation, got = recomputed; or the layer could not
 * be read) or absent (no annotation). Report outcome: verified / failed / absent (nothing sealed).
 */
export async function verifyImageComposefs(ref: string, opts: OpenImageOptions & ImageDigestOptions = {}): Promise<VerifyReport> {
  const img = await openImage(ref, opts);
  try {
    const wantMerged = img.manifest.annotations?.[ANNOTATION_COMPOSEFS_DIGEST];
    const wantLayers = img.layers.map((l) => l.annotations?.[ANNOTATION_LAYER_DIGEST]);
    const checks: Check[] = [];
    let failure: Error | undefined;
    let merged: string | undefined;
    const got: string[] = [];
    if (wantMerged !== undefined || wantLayers.some((w) => w !== undefined)) {
      try {
        const tree = await treeFromImage(img, {
          onLayerTree: (_i, root) => void got.push(composefsDigest(root).toString('hex')),
          ...(opts.onLayer ? { onLayer: opts.onLayer } : {}),
        });
        merged = composefsDigest(tree).toString('hex');
      } catch (e) {
        if (!(e instanceof Error)) throw e;
        failure = e; // reading stops at the first bad layer: got[] holds the layers before it
      }
    }
    const describe = (name: string, w: string | undefined, g: string | undefined, what: string): Check => {
      if (w === undefined) return { name, status: 'absent', detail: `no ${what}` };
      if (!HEX64.test(w)) return { name, status: 'fail', detail: `${what} annotation is not 64 lower-case hex digits`, expected: w, ...(g ? { got: g } : {}) };
      if (g === undefined) return { name, status: 'fail', detail: `cannot recompute: ${failure?.message ?? 'not computed'}`, expected: w };
      return g === w
        ? { name, status: 'pass', detail: `recomputed ${g} matches ${what}` }
        : { name, status: 'fail', detail: `recomputed digest differs from ${what}`, expected: w, got: g };
    };
    // A partly sealed image is not a verified one: once any annotation is there, the manifest's
    // (the one that vouches for the deployed tree) is required, and per-layer annotations, which
    // `seal` writes on every layer, are all required once one layer has one.
    const layersSealed = wantLayers.some((w) => w !== undefined);
    const sealed = wantMerged !== undefined || layersSealed;
    const required = (c: Check, req: boolean): Check => (req && c.status === 'absent' ? { ...c, required: true } : c);
    checks.push(required(describe('composefs-digest', wantMerged, merged, `manifest annotation ${ANNOTATION_COMPOSEFS_DIGEST}`), sealed));
    for (let i = 0; i < img.layers.length; i++) {
      const c = required(describe(`layer-${i}-composefs-digest`, wantLayers[i], got[i], `layer ${i} annotation ${ANNOTATION_LAYER_DIGEST}`), layersSealed);
      if (c.status === 'fail' && got[i] === undefined && failure && i === got.length) c.detail = `cannot read ${layerName(img, i)}: ${failure.message}`;
      checks.push(c);
    }
    return makeReport(`image ${img.source.location} (manifest ${img.manifestDigest})`, checks);
  } finally {
    await img.close();
  }
}

/**
 * Computes the composefs annotations of an image while its layers are being written (e.g. by
 * `encapsulate --composefs`): `tap(i, tar)` returns the layer's tar stream unchanged and scans it
 * on the way (metadata and content digests only); once every layer has been written, `finish()`
 * applies the scans in layer order. Layers may be written concurrently and finish in any order.
 */
export class ComposefsLayerTap {
  private readonly scans: (LayerScan | undefined)[] = [];
  private digests: ImageDigests | undefined;

  /** Pass layer `index`'s uncompressed tar through, scanning it. */
  tap(index: number, tar: Readable, what = `layer ${index}`): Readable {
    const scanner = createLayerScanner(what);
    const scans = this.scans;
    const t = new Transform({
      transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
        try {
          scanner.push(chunk);
        } catch (e) {
          cb(e as Error);
          return;
        }
        cb(null, chunk);
      },
      flush(cb: TransformCallback): void {
        scanner.end().then(
          (scan) => {
            scans[index] = scan;
            cb();
          },
          (e: Error) => cb(e),
        );
      },
    });
    tar.on('error', (e) => t.destroy(e));
    return tar.pipe(t);
  }

  /** The digests of the layers tapped so far (call when all are written). */
  finish(): ImageDigests {
    if (this.digests) return this.digests;
    const merged = new BuildTree();
    const layers: string[] = [];
    for (let i = 0; i < this.scans.length; i++) {
      const scan = this.scans[i];
      if (!scan) throw new OstreeOciError(`composefs digests: layer ${i} was not scanned completely`);
      layers.push(composefsDigest(finalizeTree(layerAloneTree(scan, merged), {}, scan.what)).toString('hex'));
      applyLayer(merged, scan);
    }
    this.digests = { merged: composefsDigest(finalizeTree(merged, {}, 'image')).toString('hex'), layers };
    return this.digests;
  }

  /** Manifest annotations to add. */
  manifestAnnotations(): Record<string, string> {
    return { [ANNOTATION_COMPOSEFS_DIGEST]: this.finish().merged };
  }

  /** The layers with their per-layer annotation added to the descriptors. */
  annotateLayers(layers: LayerResult[]): LayerResult[] {
    const d = this.finish();
    if (d.layers.length !== layers.length) throw new OstreeOciError(`composefs digests: ${d.layers.length} layers scanned, ${layers.length} written`);
    return layers.map((l, i) => ({
      ...l,
      descriptor: { ...l.descriptor, annotations: { ...(l.descriptor.annotations ?? {}), [ANNOTATION_LAYER_DIGEST]: d.layers[i]! } },
    }));
  }
}
