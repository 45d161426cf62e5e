/**
 * ostree-oci library entry point. Each module is also importable on its own; this file re-exports
 * the public API. (Modules add their exports here as they land.)
 */
export * from './errors.js';
export { installSignalCleanup, runInterruptCleanup } from './cleanup.js';
export { DEFAULT_LIMITS, LIMIT_NAMES, LIMITS_ENV, LimitError, parseLimits, resolveLimits, type ImportLimits } from './limits.js';
export { Repo, RepoOpenError, ObjectType, RepoMode, OstreeError } from './ostree/repo.js';
export type { LoadedCommit, FileObject, WalkEntry, WriteContentOptions, RepoModeName } from './ostree/repo.js';
export { contentChecksum, contentChecksumStream, ContentHasher, sha256Hex } from './ostree/checksum.js';
export { describeCommit, type CommitSummary } from './ostree/inspect.js';
export { verifyCommitObjects, type VerifyObjectsResult } from './ostree/verify-objects.js';
export { encode, decode, lookup, type GValue, type Variant, type VarDict } from './gvariant/codec.js';
export * from './gvariant/ostree-types.js';
export * as tree from './tree/model.js';
export {
  fsverityDigest,
  fsverityDigestFile,
  fsverityDigestStream,
  fsverityDescriptorDigest,
  FsVerityHasher,
  MerkleTreeBuilder,
  FsVerityError,
  type FsVerityOptions,
  type FsVerityFileOptions,
  type EmptyInputMode,
} from './composefs/fsverity.js';
export {
  readErofsImage,
  readErofsImageSync,
  readErofsImageWithInfo,
  readErofsImageInfo,
  ErofsFormatError,
  type ErofsImageInfo,
  type ReadErofsOptions,
} from './composefs/erofs/reader.js';
export * as container from './container/index.js';
export { encapsulate, unencapsulate } from './container/index.js';
export * as cfs from './cfs/index.js';
export { migrateCommit, CfsRepo } from './cfs/index.js';
export * as store from './store/index.js';
export { pullImage } from './store/index.js';
export { treeFromImage, scanLayer, applyLayer, layerAloneTree, type LayerScan, type ImageLayersOptions } from './composefs/sources/oci-layers.js';
export { treeFromDirectory, type DirectoryTreeOptions } from './composefs/sources/directory.js';
export { bootVariantOf, type ImageTreeOptions, type XattrPolicy, type RootMetadataPolicy } from './composefs/sources/image-tree.js';
export { ComposefsSourceError } from './composefs/sources/errors.js';
export {
  computeImageDigests,
  sealImage,
  verifyImageComposefs,
  ComposefsLayerTap,
  ANNOTATION_COMPOSEFS_DIGEST,
  ANNOTATION_LAYER_DIGEST,
  type ImageDigests,
} from './composefs/image-digests.js';
export { diffTrees, loadTree, type Difference, type DiffResult } from './composefs/diff.js';
export {
  parseDumpfile,
  parseDumpfileSync,
  DumpfileParser,
  writeDumpfile,
  writeDumpfileTo,
  dumpfileChunks,
  buildErofs,
  ErofsImage,
  writeErofs,
  mkcomposefs,
  mkcomposefsFromDump,
  composefsDigest,
  DumpfileSyntaxError,
  ComposefsWriteError,
  ComposefsOptionsError,
  type ParseDumpfileOptions,
  type ErofsWriteOptions,
  type MkcomposefsOptions,
  type MkcomposefsResult,
} from './composefs/index.js';
