/**
 * composefs: dumpfiles (composefs-dump(5)), EROFS images byte-identical to mkcomposefs 1.0.8, and
 * the composefs digest (fs-verity digest of the image).
 */
import type { Writable } from 'node:stream';
import type { TreeNode } from '../tree/model.js';
import { FsVerityHasher } from './fsverity.js';
import { parseDumpfile, type DumpfileInput, type ParseDumpfileOptions } from './dumpfile/reader.js';
import { buildErofs, writeImageFile, writeImageStream, type ErofsWriteOptions } from './erofs/writer.js';

export {
  DumpfileParser,
  parseDumpfile,
  parseDumpfileSync,
  type DumpfileInput,
  type ParseDumpfileOptions,
} from './dumpfile/reader.js';
export { dumpfileChunks, writeDumpfile, writeDumpfileTo } from './dumpfile/writer.js';
export {
  ErofsImage,
  buildErofs,
  checkImageOutput,
  resolveVersions,
  selectVersion,
  writeErofsFile,
  writeErofsToBuffer,
  writeImageFile,
  writeImageStream,
  type ErofsWriteOptions,
} from './erofs/writer.js';
export {
  ComposefsOptionsError,
  ComposefsWriteError,
  DumpfileSyntaxError,
  type ComposefsWriteCode,
  type DumpfileField,
} from './errors.js';

export interface MkcomposefsOptions extends ErofsWriteOptions {
  /** Also compute the composefs digest (fs-verity digest of the image) while writing. */
  digest?: boolean;
}

export interface MkcomposefsResult {
  /** The image, when no output was given. */
  image?: Buffer;
  /** Image size in bytes. */
  size: number;
  /** composefs format version written. */
  version: number;
  /** fs-verity digest of the image (when `digest` was requested). */
  digest?: Buffer;
}

/**
 * Write `tree` as a composefs EROFS image (what `mkcomposefs` does): to a file path (atomically:
 * temp file + rename, nothing left behind on error), to a Writable, or, without `output`, into a
 * Buffer returned in the result.
 */
export async function mkcomposefs(
  tree: TreeNode,
  opts: MkcomposefsOptions & { output?: string | Writable } = {},
): Promise<MkcomposefsResult> {
  const image = buildErofs(tree, opts);
  const hasher = opts.digest ? new FsVerityHasher() : undefined;
  const observe = hasher ? (c: Buffer): void => void hasher.update(c) : undefined;
  const result: MkcomposefsResult = { size: image.size, version: image.version };
  if (opts.output === undefined) {
    result.image = image.toBuffer();
    observe?.(result.image);
  } else if (typeof opts.output === 'string') {
    await writeImageFile(image, opts.output, observe);
  } else {
    await writeImageStream(image, opts.output, observe);
  }
  if (hasher) result.digest = hasher.digest();
  return result;
}

/** Write the EROFS image of `tree` to a path (atomic) or a Writable. */
export async function writeErofs(
  tree: TreeNode,
  output: string | Writable,
  opts: MkcomposefsOptions = {},
): Promise<MkcomposefsResult> {
  return mkcomposefs(tree, { ...opts, output });
}

/**
 * The composefs digest of a tree: the fs-verity digest of the image mkcomposefs would write
 * (`mkcomposefs --print-digest-only`). The image is hashed as it is produced, never stored whole.
 */
export function composefsDigest(tree: TreeNode, opts: ErofsWriteOptions = {}): Buffer {
  const hasher = new FsVerityHasher();
  for (const chunk of buildErofs(tree, opts).chunks()) hasher.update(chunk);
  return hasher.digest();
}

/** Dumpfile → image in one call (`mkcomposefs --from-file`). */
export async function mkcomposefsFromDump(
  dump: DumpfileInput,
  opts: MkcomposefsOptions & ParseDumpfileOptions & { output?: string | Writable } = {},
): Promise<MkcomposefsResult> {
  const tree = await parseDumpfile(dump, opts);
  return mkcomposefs(tree, opts);
}
