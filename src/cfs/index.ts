/**
 * composefs repositories (composefs-rs / composefs-oci layout): objects named by fs-verity digest,
 * EROFS images, splitstreams, refs, fsck, gc, OCI image storage, and migration of ostree commits
 * and deployments into such a repository.
 */
export {
  CfsRepo,
  CFS_ALGORITHM,
  CFS_FORMAT_VERSION,
  META_JSON,
  TMP_DIR,
  defaultMeta,
  metaJsonBytes,
  isDigestHex,
  type CfsMeta,
} from './repository.js';
export { ObjectStore, type StoreResult, type StoreStats, type ByteStream } from './objects.js';
export { storeImage, publishImage, imageExternalFiles, imageObjects, payloadOf, type ImageObjectRef } from './images.js';
export {
  relativeLinkTarget,
  replaceSymlink,
  linkImage,
  setImageRef,
  linkStream,
  setStreamRef,
  entryObject,
  streamObject,
  listRefs,
  listEntries,
  encodeTag,
  decodeTag,
  setOciTag,
  resolveOciTag,
  manifestContentId,
  configContentId,
  layerContentId,
  OCI_REF_PREFIX,
  type Category,
  type RefEntry,
} from './refs.js';
export {
  SplitstreamWriter,
  readSplitstream,
  splitstreamChunks,
  catSplitstream,
  contentTypeOf,
  contentTypeName,
  CONTENT_TYPE,
  SPLITSTREAM_MAGIC,
  type SplitstreamInfo,
  type SplitstreamChunk,
  type SplitstreamResult,
} from './splitstream.js';
export { splitTar, INLINE_CONTENT_MAX, type TarSplitStats } from './tar-split.js';
export { fsckRepo, formatFsckReport, type FsckReport, type FsckError, type FsckErrorKind, type FsckOptions } from './fsck.js';
export { gcRepo, type GcResult } from './gc.js';
export { storeOciImage, type OciStoreResult, type OciStoreLayer } from './oci.js';
export {
  openSysroot,
  deploymentByIndex,
  bootedDeployment,
  deploymentName,
  ostreeKarg,
  type Sysroot,
  type Deployment,
  type BootedOptions,
} from './sysroot.js';
export {
  migrateCommit,
  formatMigrationReport,
  type MigrateOptions,
  type MigrationReport,
  type MigrateProgress,
} from './migrate.js';
export {
  CfsRepoError,
  CfsCorruptObjectError,
  CfsDigestMismatchError,
  SplitstreamFormatError,
  MigrateSourceError,
  MigrateVerifyError,
  CfsBusyError,
} from './errors.js';
