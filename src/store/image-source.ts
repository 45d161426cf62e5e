/**
 * Where `image pull` reads an image from, behind one small interface (`StoreImage`):
 *
 *  - `oci:` / `oci-archive:` (and `docker://` with `fetch: 'skopeo'`): the OCI module's
 *    `openImage` (for docker:// that is a full `skopeo copy` into a temp dir first);
 *  - `docker://` (default): manifest and config through `skopeo inspect --raw` (skopeo does auth,
 *    mirrors and TLS), then **only the layer blobs the store lacks** straight from the registry's
 *    HTTP API (`GET /v2/<name>/blobs/<digest>`), see registry.ts.
 *
 * Every layer stream is verified here whatever the source: compressed bytes against the
 * descriptor's digest and size, uncompressed bytes against `rootfs.diff_ids[i]`, and the
 * compressed bytes actually read are counted (`bytesRead`) so the store can report what it fetched.
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import {
  LayerDecompressError,
  OciError,
  UnsupportedMediaTypeError,
  decompressionStage,
  layerCompression,
  openImage,
  toImageReference,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  type ImageReference,
  type OpenImageOptions,
} from '../oci/index.js';
import { DiffIdCheck, OFF_THREAD_HASH_MIN } from '../oci/digest.js';
import { chain, contextError } from '../oci/stream-util.js';
import { openRegistryImage } from './registry.js';
import { LimitError, resolveLimits, type ImportLimits } from '../limits.js';
import { DecompressedSizeLimit } from '../oci/limit-stream.js';

export interface StoreImage {
  readonly ref: ImageReference;
  /** Human-readable source location for messages. */
  readonly location: string;
  readonly manifest: ImageManifest;
  readonly manifestBytes: Buffer;
  readonly manifestDigest: string;
  readonly config: ImageConfig;
  readonly configBytes: Buffer;
  readonly configDigest: string;
  readonly layers: readonly Descriptor[];
  readonly diffIds: readonly string[];
  /** How blobs are fetched: `local` (oci/oci-archive), `skopeo-copy` (whole image), `registry`. */
  readonly transport: 'local' | 'skopeo-copy' | 'registry';
  /** Verified compressed bytes of layer i (digest and size checked at end of stream). */
  openLayerCompressed(i: number): Readable;
  close(): Promise<void>;
}

export interface StoreImageOptions extends OpenImageOptions {
  /** docker:// only: `registry` (default, per-blob HTTP) or `skopeo` (copy the whole image first). */
  fetch?: 'registry' | 'skopeo';
}

export async function openStoreImage(refIn: string | ImageReference, opts: StoreImageOptions = {}): Promise<StoreImage> {
  const ref = toImageReference(refIn);
  if (ref.transport === 'docker' && (opts.fetch ?? 'registry') === 'registry') return openRegistryImage(ref, opts);
  const img = await openImage(ref, opts);
  return {
    ref,
    location: img.source.location,
    manifest: img.manifest,
    manifestBytes: img.manifestBytes,
    manifestDigest: img.manifestDigest,
    config: img.config,
    configBytes: img.configBytes,
    configDigest: img.configDigest,
    layers: img.layers,
    diffIds: img.diffIds,
    transport: ref.transport === 'docker' ? 'skopeo-copy' : 'local',
    openLayerCompressed: (i) => img.openLayerCompressed(i),
    close: () => img.close(),
  };
}

/** Counts the bytes flowing through. */
export class ByteCounter extends Transform {
  bytes = 0;
  constructor(private readonly onBytes?: (total: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }
}

/** Throws UnsupportedMediaTypeError unless layer i has a known (tar / gzip / zstd) media type. */
export function checkLayerMediaType(img: StoreImage, i: number): void {
  const d = img.layers[i]!;
  if (layerCompression(d.mediaType) === undefined) {
    throw new UnsupportedMediaTypeError(d.mediaType, `layer ${i} (${d.digest}) of ${img.location}`);
  }
}

/**
 * The verified, decompressed tar of layer i; `counter` (if given) sees the compressed bytes.
 * Data errors arrive as stream errors, naming the layer.
 */
export function openLayerTar(img: StoreImage, i: number, counter?: ByteCounter, limits?: Partial<ImportLimits>): Readable {
  if (!Number.isInteger(i) || i < 0 || i >= img.layers.length) {
    throw new OciError(`${img.location}: layer index ${i} out of range (image ${img.manifestDigest} has ${img.layers.length} layers)`);
  }
  checkLayerMediaType(img, i);
  const d = img.layers[i]!;
  const comp = layerCompression(d.mediaType)!;
  const where = `layer ${i} (${d.digest}) of ${img.location}`;
  const stages: Transform[] = [];
  if (counter) stages.push(counter);
  const dec = decompressionStage(comp);
  // Decompression bombs: at most limits.maxLayerRatio × the blob size comes out (src/limits.ts).
  if (dec) stages.push(dec, new DecompressedSizeLimit(resolveLimits(limits), d.size, where));
  stages.push(new DiffIdCheck(i, d.digest, img.diffIds[i]!, { offThread: d.size >= OFF_THREAD_HASH_MIN }));
  return chain(img.openLayerCompressed(i), stages, (e) =>
    e instanceof LimitError
      ? e
      : (e as NodeJS.ErrnoException).syscall || e instanceof OciError
      ? contextError(e, `${where}: read failed`)
      : contextError(e, `${where}: ${comp} decompression failed (${d.mediaType})`, LayerDecompressError),
  );
}
