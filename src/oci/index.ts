/**
 * OCI image I/O: references, image layouts (`oci:`), archives (`oci-archive:`), registries
 * (`docker://` through skopeo), verified blob/layer reading, layer compression, canonical JSON.
 *
 * Entry points: openImage(ref) for reading, createImageWriter(ref) for writing,
 * rewriteManifest(src, dst, edit) for annotation-only rewrites.
 */
export {
  openImage,
  createImageWriter,
  rewriteManifest,
  openSource,
  openVerifiedBlob,
  MAX_MANIFEST_SIZE,
  MAX_CONFIG_SIZE,
  type OciImage,
  type ImageWriter,
  type OpenImageOptions,
  type TransportOptions,
  type CommitOptions,
  type CommitResult,
  type AnnotationsEditor,
  type RewriteOptions,
  type RewriteResult,
} from './image.js';
export {
  OciLayoutWriter,
  type LayerOptions,
  type LayerResult,
  type BlobInput,
  type AddBlobOptions,
  type PutManifestOptions,
  type OpenLayoutOptions,
} from './layout-writer.js';
export { OciDirSource, OciArchiveSource, SkopeoDirSource, type BlobSource } from './source.js';
export { packLayoutToArchive } from './archive.js';
export { indexTar, type TarEntryLocation } from './tar-index.js';
export {
  parseImageReference,
  formatImageReference,
  toImageReference,
  type ImageReference,
  type OciDirReference,
  type OciArchiveReference,
  type DockerReference,
  type Transport,
} from './ref.js';
export { canonicalJson, canonicalJsonBytes } from './canonical-json.js';
export { sha256Digest, digestHex, HashCounter, VerifyStream, DiffIdCheck, OFF_THREAD_HASH_MIN, type Expected, type VerifyOptions } from './digest.js';
export {
  compressionStages,
  decompressionStage,
  resolveLevel,
  ZstdWorkerCompressStream,
  DEFAULT_GZIP_LEVEL,
  FAST_GZIP_LEVEL,
  DEFAULT_ZSTD_LEVEL,
  FAST_ZSTD_LEVEL,
} from './compression.js';
export { skopeoCopy, skopeoCopyArgs, type SkopeoCopyOptions } from './skopeo.js';
export {
  MediaType,
  ANNOTATION_REF_NAME,
  layerCompression,
  ociLayerMediaType,
  isManifestMediaType,
  isIndexMediaType,
  isConfigMediaType,
  checkDigest,
  validateDescriptor,
  parseIndex,
  parseManifest,
  parseConfig,
  hostArchitecture,
  SHA256_DIGEST_RE,
  type Compression,
  type Descriptor,
  type Platform,
  type ImageManifest,
  type ImageIndex,
  type ImageConfig,
  type HistoryEntry,
} from './types.js';
export {
  OciError,
  OciFormatError,
  OciDigestError,
  OciSizeError,
  DiffIdMismatchError,
  UnsupportedMediaTypeError,
  ImageNotFoundError,
  BlobNotFoundError,
  LayerDecompressError,
  SkopeoError,
} from './errors.js';
