/**
 * The image store: pull OCI images into an ostree repository (ostree-ext's
 * `ostree/container/{image,blob}` refs) without losing the original commit's detached metadata.
 */
export {
  pullImage,
  readImageState,
  listImages,
  listImageRefs,
  inspectImage,
  removeImage,
  removeImages,
  pruneImages,
  writeObjectSetCommit,
  commitmetaInfo,
  META_MANIFEST,
  META_MANIFEST_DIGEST,
  META_IMAGE_CONFIG,
  META_IMAGE_COMMIT,
  META_IMAGE_REFERENCE,
  type StoreMode,
  type LayerRole,
  type PullOptions,
  type PullProgress,
  type PullResult,
  type PulledLayer,
  type ImageState,
  type ImageSummary,
  type ImageDetails,
  type RemoveResult,
  type PruneResult,
  type CommitmetaInfo,
} from './store.js';
export {
  escapeRef,
  unescapeRef,
  prefixEscapeRef,
  unprefixUnescapeRef,
  imageRefFor,
  metaRefFor,
  layerRefFor,
  IMAGE_REF_PREFIX,
  LAYER_REF_PREFIX,
  META_REF_PREFIX,
} from './refescape.js';
export { importDerivedLayer, applyLayerCommit, mapLayerPath, normalizeLayerPath, type DerivedLayerCommit } from './derived.js';
export { openStoreImage, type StoreImage, type StoreImageOptions } from './image-source.js';
export { RegistryClient } from './registry.js';
export { StoreError, ImageNotInStoreError, RegistryError, DerivedLayerError } from './errors.js';
