/**
 * ostree-ext container format: the tar layer format (tar-export / tar-import), chunking, and the
 * encapsulate / unencapsulate workflows.
 */
export {
  encapsulate,
  commitLabels,
  planChunking,
  formatTimestamp,
  LABEL_COMMIT,
  LABEL_FINAL_DIFFID,
  LABEL_BOOTABLE,
  LABEL_BOOTC,
  LABEL_LINUX,
  LABEL_VERSION,
  ANNOTATION_COMPONENTS,
  type EncapsulateOptions,
  type EncapsulateProgress,
  type EncapsulateResult,
  type EncapsulatedLayer,
} from './encapsulate.js';
export {
  unencapsulate,
  parseOstreeLayout,
  type UnencapsulateOptions,
  type UnencapsulateProgress,
  type UnencapsulateResult,
  type OstreeLayout,
} from './unencapsulate.js';
export {
  chunkByContentMeta,
  chunkBySubtrees,
  collectContent,
  parseContentMeta,
  chunkName,
  jumpHash,
  RESERVED_CHUNK_NAME,
  type Chunk,
  type Chunking,
  type ContentMeta,
} from './chunking.js';
export { exportCommitTar, exportChunk, exportFinalChunk, OstreeTarWriter, type ChunkMapping } from './tar-export.js';
export { CommitImporter, MAX_METADATA_SIZE, type ImportStats, type ImportProgress, type ImportedCommit, type LayerMode } from './tar-import.js';
export { TarReader, type TarEntry } from './tar-reader.js';
export { TarBuilder, TarOutput } from './tar-writer.js';
export { Header as TarHeader, EntryType as TarEntryType } from './tar-header.js';
export { normalizeEntryPath, parseRepoPath, objectPath, REPO_PREFIX } from './paths.js';
export { ContainerFormatError, MissingObjectError, NotOstreeImageError, CommitVerificationError, UnrepresentableCommitError } from './errors.js';
