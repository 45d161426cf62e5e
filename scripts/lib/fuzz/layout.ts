/**
 * OCI image layouts as the fuzzer edits them: an `ImageDraft` holds the index, manifest, config and
 * each layer's tar (and compressed blob) in memory; `writeDraft` re-packs it into a layout
 * directory, recomputing blob digests, sizes, diff_ids and the `ostree.final-diffid` label unless a
 * mutation pinned a value (inconsistent digests) or replaced raw bytes. Independent of src/oci.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { compress as zstdCompress, decompress as zstdDecompress } from 'zstd-napi';

export type Json = Record<string, unknown>;

const digests = new WeakMap<Buffer, string>();

/** sha256 digest; cached per Buffer (mutations never change a Buffer in place, they replace it). */
export const sha256 = (b: Buffer | string): string => {
  if (typeof b === 'string') return `sha256:${createHash('sha256').update(b).digest('hex')}`;
  let d = digests.get(b);
  if (!d) digests.set(b, (d = `sha256:${createHash('sha256').update(b).digest('hex')}`));
  return d;
};

export interface LayerDraft {
  mediaType: string;
  /** Uncompressed tar. */
  tar: Buffer;
  /** Stored blob; recomputed from `tar` when `dirty`. */
  blob: Buffer;
  dirty: boolean;
  /** Extra or replaced descriptor fields written as they are (digest, size, mediaType, …). */
  descOverride?: Json;
  /** diff_ids[i] written as it is. */
  diffIdOverride?: string;
  /** Do not write the blob file (missing blob). */
  omitBlob?: boolean;
  /** Put a special file where the blob should be. */
  special?: Special;
  /** The base image's blob file, hard-linked while `blob` is still that file's bytes. */
  origin?: { blob: Buffer; path: string };
}

export type Special = 'dir' | 'fifo' | 'zero';

function makeSpecial(path: string, kind: Special): void {
  rmSync(path, { force: true, recursive: true });
  if (kind === 'dir') mkdirSync(path);
  else if (kind === 'fifo') execFileSync('mkfifo', [path]);
  else symlinkSync('/dev/zero', path);
}

export interface ImageDraft {
  index: Json;
  manifest: Json;
  config: Json;
  layers: LayerDraft[];
  /** Index of the layer whose diffid `ostree.final-diffid` names (the label follows it). */
  finalLayer: number | null;
  /** Raw bytes replacing the serialized document (after any other edits). */
  rawManifest?: Buffer;
  rawConfig?: Buffer;
  rawIndex?: Buffer;
  /** Descriptor fields of the manifest in index.json / of the config in the manifest, written as they are. */
  manifestDescOverride?: Json;
  configDescOverride?: Json;
  /** Put a special file in place of index.json. */
  specialIndex?: Special;
  /** `rootfs.diff_ids` written as it is (wrong count, wrong types). */
  diffIdsOverride?: unknown;
  /** Extra files to write (relative to the layout). */
  extraFiles: Array<[string, Buffer]>;
}

export const LABEL_FINAL_DIFFID = 'ostree.final-diffid';

export function compressionOf(mediaType: string): 'gzip' | 'zstd' | 'none' {
  return mediaType.endsWith('gzip') ? 'gzip' : mediaType.endsWith('zstd') ? 'zstd' : 'none';
}

export function compressBytes(buf: Buffer, c: 'gzip' | 'zstd' | 'none'): Buffer {
  if (c === 'gzip') return zlib.gzipSync(buf, { level: 1 });
  if (c === 'zstd') return zstdCompress(buf, { compressionLevel: 1 });
  return buf;
}

export function decompressBytes(buf: Buffer, c: 'gzip' | 'zstd' | 'none'): Buffer {
  if (c === 'gzip') return zlib.gunzipSync(buf);
  if (c === 'zstd') return zstdDecompress(buf);
  return buf;
}

const blobFile = (dir: string, digest: string): string => join(dir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));

/** Load the single image of an OCI layout directory. */
export function loadDraft(dir: string): ImageDraft {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as Json;
  const md = (index['manifests'] as Json[])[0]!;
  const manifest = JSON.parse(readFileSync(blobFile(dir, md['digest'] as string), 'utf8')) as Json;
  const cd = manifest['config'] as Json;
  const config = JSON.parse(readFileSync(blobFile(dir, cd['digest'] as string), 'utf8')) as Json;
  const diffIds = (config['rootfs'] as { diff_ids: string[] }).diff_ids;
  const labels = ((config['config'] as Json | undefined)?.['Labels'] ?? {}) as Record<string, string>;
  const layers = (manifest['layers'] as Json[]).map((d) => {
    const blob = readFileSync(blobFile(dir, d['digest'] as string));
    const mediaType = d['mediaType'] as string;
    return { mediaType, blob, tar: decompressBytes(blob, compressionOf(mediaType)), dirty: false, origin: { blob, path: blobFile(dir, d['digest'] as string) } };
  });
  const fin = diffIds.indexOf(labels[LABEL_FINAL_DIFFID] ?? '');
  return { index, manifest, config, layers, finalLayer: fin < 0 ? null : fin, extraFiles: [] };
}

export function cloneDraft(d: ImageDraft): ImageDraft {
  return {
    index: structuredClone(d.index),
    manifest: structuredClone(d.manifest),
    config: structuredClone(d.config),
    // Buffers are never mutated in place by mutations (they replace them), so sharing is safe.
    layers: d.layers.map((l) => ({ ...l })),
    finalLayer: d.finalLayer,
    extraFiles: [],
  };
}

export interface WrittenImage {
  manifestDigest: string;
  diffIds: string[];
  layerDigests: string[];
}

/** Write the draft as an OCI layout into `dir` (which must be empty or missing). */
export function writeDraft(d: ImageDraft, dir: string): WrittenImage {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const put = (b: Buffer): string => {
    const dg = sha256(b);
    writeFileSync(blobFile(dir, dg), b);
    return dg;
  };
  const descs: Json[] = [];
  const diffIds: string[] = [];
  const layerDigests: string[] = [];
  for (const l of d.layers) {
    if (l.dirty) {
      l.blob = compressBytes(l.tar, compressionOf(l.mediaType));
      l.dirty = false;
    }
    const digest = sha256(l.blob);
    if (l.special) makeSpecial(blobFile(dir, digest), l.special);
    else if (!l.omitBlob && !existsSync(blobFile(dir, digest))) {
      if (l.origin && l.origin.blob === l.blob) linkSync(l.origin.path, blobFile(dir, digest));
      else writeFileSync(blobFile(dir, digest), l.blob);
    }
    descs.push({ mediaType: l.mediaType, digest, size: l.blob.length, ...(l.descOverride ?? {}) });
    diffIds.push(l.diffIdOverride ?? sha256(l.tar));
    layerDigests.push(digest);
  }
  const config = structuredClone(d.config);
  const rootfs = (config['rootfs'] ?? {}) as Json;
  if (typeof rootfs === 'object' && rootfs !== null && Array.isArray(rootfs['diff_ids'])) rootfs['diff_ids'] = diffIds.slice();
  if (d.diffIdsOverride !== undefined && typeof rootfs === 'object' && rootfs !== null) rootfs['diff_ids'] = d.diffIdsOverride;
  if (d.finalLayer !== null && d.finalLayer < diffIds.length) {
    const labels = ((config['config'] as Json | undefined)?.['Labels'] ?? undefined) as Record<string, string> | undefined;
    if (labels && typeof labels === 'object' && LABEL_FINAL_DIFFID in labels) labels[LABEL_FINAL_DIFFID] = diffIds[d.finalLayer]!;
  }
  const configBytes = d.rawConfig ?? Buffer.from(JSON.stringify(config));
  const configDigest = put(configBytes);
  const manifest = structuredClone(d.manifest);
  manifest['config'] = { ...(manifest['config'] as Json), digest: configDigest, size: configBytes.length, ...(d.configDescOverride ?? {}) };
  manifest['layers'] = descs;
  const ann = manifest['annotations'] as Record<string, string> | undefined;
  if (ann && d.finalLayer !== null && d.finalLayer < diffIds.length && LABEL_FINAL_DIFFID in ann) ann[LABEL_FINAL_DIFFID] = diffIds[d.finalLayer]!;
  const manifestBytes = d.rawManifest ?? Buffer.from(JSON.stringify(manifest));
  const manifestDigest = put(manifestBytes);
  const index = structuredClone(d.index);
  const md = (index['manifests'] as Json[])[0]!;
  (index['manifests'] as Json[])[0] = { ...md, digest: manifestDigest, size: manifestBytes.length, ...(d.manifestDescOverride ?? {}) };
  if (d.specialIndex) makeSpecial(join(dir, 'index.json'), d.specialIndex);
  else writeFileSync(join(dir, 'index.json'), d.rawIndex ?? Buffer.from(JSON.stringify(index)));
  for (const [rel, data] of d.extraFiles) {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    writeFileSync(join(dir, rel), data);
  }
  return { manifestDigest, diffIds, layerDigests };
}
