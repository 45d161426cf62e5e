/**
 * encapsulate: an ostree commit → an OCI image in ostree-ext's layout
 * (shared/specs/ostree-container-format.md §4).
 *
 *  - layer 0 is the ostree commit layer (structure, `.commit`, `.commitmeta`, metadata objects and
 *    the content not assigned to a chunk); layers 1…n are content chunks (see chunking.ts), each
 *    annotated `ostree.components`;
 *  - config labels, built in ostree-ext's order (later wins): `--copymeta` keys,
 *    `ostree.bootable` + `containers.bootc=1` (from the commit's `ostree.bootable`), `ostree.linux`,
 *    `org.opencontainers.image.version` (from `version`), `ostree.commit`, user labels (`-l`, then
 *    content-metadata labels), and `ostree.final-diffid` = diffid of the last ostree layer;
 *  - manifest annotations = the same map; config `created` = the commit timestamp
 *    (`%Y-%m-%dT%H:%M:%SZ`) unless given; one history entry per layer (`created_by` = commit
 *    subject or "ostree export of commit …", then chunk names); `Cmd` from `--cmd` or the commit's
 *    `ostree.container-cmd`;
 *  - layers are generated and compressed concurrently (gzip on the libuv pool, zstd in worker
 *    threads), at most `jobs` at a time so memory stays bounded.
 */
import { cpus } from 'node:os';
import { OstreeOciError, UsageError } from '../errors.js';
import { formatRfc3339Seconds, parseRfc3339Seconds } from '../oci/rfc3339.js';
import type { Variant } from '../gvariant/codec.js';
import {
  createImageWriter,
  hostArchitecture,
  toImageReference,
  type HistoryEntry,
  type ImageConfig,
  type ImageReference,
  type LayerResult,
  type TransportOptions,
} from '../oci/index.js';
import { ObjectType, type LoadedCommit, type Repo } from '../ostree/repo.js';
import { checkMetadataBytes } from '../ostree/verify-objects.js';
import {
  chunkByContentMeta,
  chunkBySubtrees,
  collectContent,
  componentsAnnotation,
  type Chunk,
  type Chunking,
  type ContentMeta,
} from './chunking.js';
import { checkCheckoutPaths, exportChunk, exportFinalChunk } from './tar-export.js';
import { ANNOTATION_COMPOSEFS_DIGEST, ANNOTATION_LAYER_DIGEST, ComposefsLayerTap } from '../composefs/image-digests.js';

export const LABEL_COMMIT = 'ostree.commit';
export const LABEL_FINAL_DIFFID = 'ostree.final-diffid';
export const LABEL_BOOTABLE = 'ostree.bootable';
export const LABEL_BOOTC = 'containers.bootc';
export const LABEL_LINUX = 'ostree.linux';
export const LABEL_VERSION = 'org.opencontainers.image.version';
export const LEGACY_VERSION_LABEL = 'version';
export const ANNOTATION_COMPONENTS = 'ostree.components';

export interface EncapsulateOptions extends TransportOptions {
  /** Extra labels (CLI `-l k=v`). */
  labels?: Record<string, string>;
  /** Layer compression (default gzip, as ostree-ext). */
  compression?: 'gzip' | 'zstd';
  /** gzip level 1 / zstd level 1 (ostree-ext `--compression-fast`). */
  compressionFast?: boolean;
  /** Split content into at most this many chunk layers after the commit layer. */
  maxLayers?: number;
  /** ostree-ext content metadata (`--contentmeta`); implies chunking by its layers. */
  contentmeta?: ContentMeta;
  /** Container `Cmd` (default: the commit's `ostree.container-cmd`). */
  cmd?: string[];
  /** Config `created` (default: the commit timestamp; content metadata may set it). */
  created?: string;
  /** Commit metadata string keys copied to labels; missing keys are an error. */
  copyMeta?: string[];
  /** Commit metadata string keys copied to labels when present. */
  copyMetaOpt?: string[];
  /** Also write the legacy `version` label. */
  legacyVersionLabel?: boolean;
  /** Platform of the image (default: this host's architecture, linux). */
  platform?: { architecture: string; os: string };
  /** Layers generated and compressed at the same time (default min(4, cores + 1)). */
  jobs?: number;
  onProgress?: (p: EncapsulateProgress) => void;
  /**
   * Add the composefs digest annotations (`containers.composefs-digest` on the manifest, the
   * per-layer digest on each layer), computed from the layer tars as they are written (see
   * composefs/image-digests.ts): the same values `seal` computes from the finished image.
   */
  composefs?: boolean;
}

export interface EncapsulateProgress {
  layer: number;
  layers: number;
  name: string;
  state: 'started' | 'finished';
}

export interface EncapsulatedLayer {
  name: string;
  /** With `composefs`: this layer's own composefs digest (its org.ostree-oci.composefs.layer-digest). */
  composefsDigest?: string;
  components: string[];
  digest: string;
  diffId: string;
  size: number;
  uncompressedSize: number;
  mediaType: string;
}

export interface EncapsulateResult {
  commit: string;
  manifestDigest: string;
  reference: string;
  labels: Record<string, string>;
  /** With `composefs`: the merged tree's composefs digest (the manifest's containers.composefs-digest). */
  composefsDigest?: string;
  layers: EncapsulatedLayer[];
}

function metaLookup(commit: LoadedCommit, key: string): Variant | undefined {
  return commit.commit.metadata.find(([k]) => k === key)?.[1];
}

function metaString(commit: LoadedCommit, key: string): string | undefined {
  const v = metaLookup(commit, key);
  if (v === undefined) return undefined;
  if (v.type !== 's') throw new UsageError(`commit ${commit.checksum}: metadata ${key} is of type ${v.type}, expected a string`);
  return v.value as string;
}

/** RFC 3339 with seconds and `Z`, as ostree-ext renders times. */
export function formatTimestamp(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Config `created` (written as given, as ostree-ext does, once it is a date-time skopeo can read)
 * and the history entries' `created` (the same instant, whole seconds, UTC).
 */
export function resolveCreated(commit: LoadedCommit, opts: Pick<EncapsulateOptions, 'created' | 'contentmeta'>): { config: string; history: string } {
  const given = opts.created !== undefined ? { text: opts.created, what: '--created' } : opts.contentmeta?.created !== undefined ? { text: opts.contentmeta.created, what: 'content metadata "created"' } : undefined;
  if (given) {
    const seconds = parseRfc3339Seconds(given.text);
    const history = seconds === null ? null : formatRfc3339Seconds(seconds);
    if (history === null) {
      throw new UsageError(
        `${given.what} ${JSON.stringify(given.text)} is not an RFC 3339 date-time between years 0000 and 9999 in UTC ` +
          '(like 2024-01-02T03:04:05Z or 2024-01-02T04:04:05+01:00), which an OCI config "created" must be',
        { field: given.what, value: given.text },
      );
    }
    return { config: given.text, history };
  }
  const ts = commit.commit.timestamp;
  const text = formatRfc3339Seconds(ts);
  if (text === null) {
    throw new OstreeOciError(
      `commit ${commit.checksum}: timestamp ${ts} is after 9999-12-31T23:59:59Z and has no RFC 3339 form for the config "created"; give one with --created`,
      { commit: commit.checksum, timestamp: String(ts) },
    );
  }
  return { config: text, history: text };
}

/** Labels from commit metadata, in ostree-ext's order (see module comment). */
export function commitLabels(commit: LoadedCommit, opts: EncapsulateOptions): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const k of opts.copyMeta ?? []) {
    const v = metaString(commit, k);
    if (v === undefined) throw new UsageError(`could not find commit metadata key: ${k} (commit ${commit.checksum})`);
    labels[k] = v;
  }
  for (const k of opts.copyMetaOpt ?? []) {
    const v = metaString(commit, k);
    if (v !== undefined) labels[k] = v;
  }
  const bootable = metaLookup(commit, LABEL_BOOTABLE);
  if (bootable !== undefined && bootable.type === 'b') {
    labels[LABEL_BOOTABLE] = String(bootable.value);
    labels[LABEL_BOOTC] = '1';
  }
  const linux = metaLookup(commit, LABEL_LINUX);
  if (linux?.type === 's') labels[LABEL_LINUX] = linux.value as string;
  const version = metaLookup(commit, 'version');
  if (version?.type === 's') {
    if (opts.legacyVersionLabel) labels[LEGACY_VERSION_LABEL] = version.value as string;
    labels[LABEL_VERSION] = version.value as string;
  }
  labels[LABEL_COMMIT] = commit.checksum;
  // These two say which commit the image holds and where its ostree layers end: given by hand,
  // they only make an image that importers refuse.
  const reserved = (k: string, from: string): void => {
    if (k === LABEL_COMMIT || k === LABEL_FINAL_DIFFID) throw new UsageError(`label ${k} (from ${from}) is set by encapsulate itself and cannot be given`, { label: k });
  };
  for (const [k, v] of Object.entries(opts.labels ?? {})) {
    reserved(k, '-l');
    labels[k] = v;
  }
  for (const [k, v] of Object.entries(opts.contentmeta?.labels ?? {})) {
    reserved(k, 'the content metadata');
    labels[k] = v;
  }
  return labels;
}

/** Decide which objects go into which layer. */
export function planChunking(repo: Repo, commit: LoadedCommit, opts: Pick<EncapsulateOptions, 'maxLayers' | 'contentmeta'>): Chunking {
  const sized = opts.contentmeta === undefined && opts.maxLayers !== undefined;
  const { mapping, tree } = collectContent(repo, commit, sized);
  // Before anything is written: a path the format cannot carry fails here, not mid-layer.
  checkCheckoutPaths(commit.checksum, mapping);
  if (opts.contentmeta) return chunkByContentMeta(opts.contentmeta, mapping, opts.maxLayers);
  if (opts.maxLayers !== undefined) return { remainder: new Map(), chunks: chunkBySubtrees(tree, mapping, opts.maxLayers) };
  return { remainder: mapping, chunks: [] };
}

/** Run `tasks` with at most `limit` running at once; results in task order. */
async function pool<T>(tasks: Array<() => Promise<T>>, limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (next < tasks.length && failed === undefined) {
      const i = next++;
      try {
        results[i] = await tasks[i]!();
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  if (failed !== undefined) throw failed;
  return results;
}

/**
 * Write commit `rev` of `repo` as an ostree container image to `imgref` (`oci:`,
 * `oci-archive:`, `docker://`). Returns the manifest digest and layer details.
 */
export async function encapsulate(
  repo: Repo,
  rev: string,
  imgref: string | ImageReference,
  opts: EncapsulateOptions = {},
): Promise<EncapsulateResult> {
  const ref = toImageReference(imgref);
  const commit = repo.loadCommit(rev);
  checkMetadataBytes(repo, ObjectType.COMMIT, commit.checksum, commit.bytes, `rev ${rev}`);
  const compression = opts.compression ?? 'gzip';
  if (compression !== 'gzip' && compression !== 'zstd') throw new UsageError(`unsupported compression "${String(compression)}" (gzip or zstd)`);
  if (opts.maxLayers !== undefined && (!Number.isInteger(opts.maxLayers) || opts.maxLayers < 1)) {
    throw new UsageError(`--max-layers must be a positive integer, got ${opts.maxLayers}`);
  }
  const labels = commitLabels(commit, opts);
  const chunking = planChunking(repo, commit, opts);
  const created = resolveCreated(commit, opts);
  const subject = commit.commit.subject;
  const commitLayerName = subject === '' ? `ostree export of commit ${commit.checksum}` : subject;

  const transport: TransportOptions = {};
  if (opts.tlsVerify !== undefined) transport.tlsVerify = opts.tlsVerify;
  if (opts.tmpDir !== undefined) transport.tmpDir = opts.tmpDir;
  if (opts.authFile !== undefined) transport.authFile = opts.authFile;
  const writer = await createImageWriter(ref, transport);
  try {
    const jobs = opts.jobs ?? Math.min(4, cpus().length + 1);
    const total = chunking.chunks.length + 1;
    const layerOpts = (annotations?: Record<string, string>) => ({
      compression,
      fast: opts.compressionFast ?? false,
      ...(annotations ? { annotations } : {}),
    });
    const run = (i: number, name: string, make: () => Promise<LayerResult>) => async (): Promise<LayerResult> => {
      opts.onProgress?.({ layer: i, layers: total, name, state: 'started' });
      const r = await make();
      opts.onProgress?.({ layer: i, layers: total, name, state: 'finished' });
      return r;
    };
    const cfs = opts.composefs ? new ComposefsLayerTap() : undefined;
    const tap = (i: number, tar: ReturnType<typeof exportChunk>) => (cfs ? cfs.tap(i, tar) : tar);
    const tasks = [
      run(0, commitLayerName, () => writer.addLayer(tap(0, exportFinalChunk(repo, commit, chunking.remainder)), layerOpts())),
      ...chunking.chunks.map((c: Chunk, i) =>
        run(i + 1, c.name, () =>
          writer.addLayer(tap(i + 1, exportChunk(repo, commit, c.mapping)), layerOpts({ [ANNOTATION_COMPONENTS]: componentsAnnotation(c.components) })),
        ),
      ),
    ];
    const written = await pool(tasks, Math.max(1, jobs));
    const layers = cfs ? cfs.annotateLayers(written) : written;
    labels[LABEL_FINAL_DIFFID] = layers[layers.length - 1]!.diffId;
    const names = [commitLayerName, ...chunking.chunks.map((c) => c.name)];
    const history: HistoryEntry[] = names.map((n) => ({ created: created.history, created_by: n }));
    const containerConfig: NonNullable<ImageConfig['config']> = { Labels: { ...labels } };
    const cmdMeta = metaLookup(commit, 'ostree.container-cmd');
    const cmd = opts.cmd ?? (cmdMeta?.type === 'as' ? (cmdMeta.value as string[]) : undefined);
    if (cmd) containerConfig.Cmd = cmd;
    const platform = opts.platform ?? { architecture: hostArchitecture(), os: 'linux' };
    const cfsAnnotations = cfs ? cfs.manifestAnnotations() : undefined;
    const result = await writer.commit({
      config: { created: created.config, architecture: platform.architecture, os: platform.os, config: containerConfig, history },
      annotations: { ...labels, ...cfsAnnotations },
      layers,
    });
    return {
      commit: commit.checksum,
      manifestDigest: result.manifestDigest,
      reference: result.reference,
      labels,
      ...(cfsAnnotations ? { composefsDigest: cfsAnnotations[ANNOTATION_COMPOSEFS_DIGEST]! } : {}),
      layers: layers.map((l, i) => ({
        ...(cfs ? { composefsDigest: l.descriptor.annotations?.[ANNOTATION_LAYER_DIGEST] ?? '' } : {}),
        name: names[i]!,
        components: i === 0 ? [] : chunking.chunks[i - 1]!.components,
        digest: l.descriptor.digest,
        diffId: l.diffId,
        size: l.descriptor.size,
        uncompressedSize: l.uncompressedSize,
        mediaType: l.descriptor.mediaType,
      })),
    };
  } catch (e) {
    await writer.abort().catch(() => {});
    throw e;
  }
}
