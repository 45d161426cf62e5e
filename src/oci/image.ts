/**
 * The top-level API: open an image for reading, write an image, rewrite a manifest.
 *
 * Reading never trusts a byte: every blob stream is checked against its descriptor's digest and
 * size (over-long input fails as soon as it passes the size; short input or a wrong digest fails
 * at end of stream, instead of 'end'), and a layer's uncompressed bytes are checked against the
 * config's `rootfs.diff_ids[i]`. A consumer must therefore read a stream to its end before
 * trusting what it got (tar extractors do).
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { registerTempPath } from '../cleanup.js';
import { OstreeOciError, UsageError } from '../errors.js';
import { resolveLimits, type ImportLimits } from '../limits.js';
import { DecompressedSizeLimit } from './limit-stream.js';
import { packLayoutToArchive } from './archive.js';
import { decompressionStage } from './compression.js';
import { DiffIdCheck, OFF_THREAD_HASH_MIN, sha256Digest, VerifyStream } from './digest.js';
import {
  ImageNotFoundError,
  LayerDecompressError,
  OciError,
  OciFormatError,
  UnsupportedMediaTypeError,
} from './errors.js';
import { OciLayoutWriter, type AddBlobOptions, type BlobInput, type LayerOptions, type LayerResult } from './layout-writer.js';
import { formatImageReference, toImageReference, type ImageReference } from './ref.js';
import { checkAuthFile, skopeoCopy } from './skopeo.js';
import { OciArchiveSource, OciDirSource, SkopeoDirSource, type BlobSource } from './source.js';
import { chain, contextError, readAll } from './stream-util.js';
import {
  ANNOTATION_REF_NAME,
  hostArchitecture,
  isConfigMediaType,
  layerCompression,
  MediaType,
  parseConfig,
  parseIndex,
  parseManifest,
  sniffManifestKind,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from './types.js';

/** Largest manifest / index accepted (as containers/image). */
export const MAX_MANIFEST_SIZE = 4 << 20;
/** Largest image config accepted. */
export const MAX_CONFIG_SIZE = 16 << 20;

export interface TransportOptions {
  /** false: talk to the registry without TLS verification (both directions), e.g. loopback http. */
  tlsVerify?: boolean;
  /** For docker:// temp copies; default /var/tmp (big layers), else os.tmpdir(). */
  tmpDir?: string;
  /** Registry credentials file (skopeo --authfile). */
  authFile?: string;
}

export interface OpenImageOptions extends TransportOptions {
  /**
   * Platform to pick when the reference resolves to an image index. Default linux + this
   * process's architecture; an index with a single manifest yields that one regardless.
   */
  platform?: Partial<Platform>;
}

export interface OciImage {
  readonly ref: ImageReference;
  readonly source: BlobSource;
  readonly manifest: ImageManifest;
  /** The manifest exactly as stored (its sha256 is manifestDigest). */
  readonly manifestBytes: Buffer;
  readonly manifestDigest: string;
  /** Descriptor that led to the manifest (from index.json, or synthesized for docker://). */
  readonly manifestDescriptor: Descriptor;
  readonly config: ImageConfig;
  readonly configBytes: Buffer;
  readonly configDigest: string;
  readonly layers: readonly Descriptor[];
  /** config.rootfs.diff_ids, same length as layers. */
  readonly diffIds: readonly string[];
  /** Verified raw bytes of any blob of this image's source. */
  openBlob(desc: Descriptor, what?: string): Readable;
  /** Verified stored (compressed) bytes of layer i. Throws synchronously for a bad index. */
  openLayerCompressed(i: number): Readable;
  /**
   * Verified, decompressed tar of layer i (blob digest + size, then diffid). Throws synchronously
   * for a bad index or an unknown media type; data errors arrive as stream errors. Compressed
   * layers are capped at `limits.maxLayerRatio` × their blob size (decompression bombs).
   */
  openLayer(i: number, opts?: { limits?: Partial<ImportLimits> }): Readable;
  close(): Promise<void>;
}

function defaultTmpDir(opts: TransportOptions): string {
  return opts.tmpDir ?? process.env['OSTREE_OCI_TMPDIR'] ?? '/var/tmp';
}

/** A temporary directory that lives until its `remove()`; an interrupted CLI removes it too. */
interface TempDir {
  path: string;
  remove(): Promise<void>;
  /** Keep it: no longer removed on interruption. */
  keep(): void;
}

/** A temp dir under `parent`, else under os.tmpdir(). Synchronous: registered before a signal can run. */
function makeTemp(parent: string, prefix: string): TempDir {
  let path: string;
  try {
    mkdirSync(parent, { recursive: true });
    path = mkdtempSync(join(parent, prefix));
  } catch {
    path = mkdtempSync(join(tmpdir(), prefix));
  }
  return tempDirAt(path);
}

function tempDirAt(path: string): TempDir {
  const unregister = registerTempPath(path);
  return {
    path,
    async remove() {
      await rm(path, { recursive: true, force: true });
      unregister();
    },
    keep: unregister,
  };
}

/** Verified raw stream of `desc` from `source`. */
export function openVerifiedBlob(source: BlobSource, desc: Descriptor, what?: string): Readable {
  const label = what ?? `blob ${desc.digest} in ${source.location}`;
  return chain(source.openRaw(desc.digest), [new VerifyStream({ digest: desc.digest, size: desc.size }, label)], (e) =>
    contextError(e, `${label}: read failed`),
  );
}

async function readVerified(source: BlobSource, desc: Descriptor, limit: number, what: string): Promise<Buffer> {
  if (desc.size > limit) throw new OciFormatError(`${what}: ${desc.size} bytes is more than the ${limit} allowed`);
  return readAll(openVerifiedBlob(source, desc, what), limit, what);
}

const platformString = (p?: Partial<Platform>): string =>
  p ? `${p.os ?? '?'}/${p.architecture ?? '?'}${p.variant ? `/${p.variant}` : ''}` : '(no platform)';

function pickFromIndex(index: ImageIndex, want: Partial<Platform>, where: string): Descriptor {
  const os = want.os ?? 'linux';
  const arch = want.architecture ?? hostArchitecture();
  const matches = index.manifests.filter(
    (d) =>
      d.platform?.os === os &&
      d.platform?.architecture === arch &&
      (want.variant === undefined || d.platform?.variant === want.variant),
  );
  if (matches.length > 0) return matches[0]!;
  if (index.manifests.length === 1) return index.manifests[0]!;
  throw new ImageNotFoundError(
    `${where}: no manifest for platform ${os}/${arch}${want.variant ? `/${want.variant}` : ''} (has: ${
      index.manifests.map((d) => platformString(d.platform)).join(', ') || 'none'
    })`,
  );
}

interface Resolved {
  desc: Descriptor;
  bytes: Buffer;
  manifest: ImageManifest;
}

/** Follow `desc` through nested indexes down to an image manifest. */
async function descend(source: BlobSource, desc: Descriptor, platform: Partial<Platform>, bytes?: Buffer): Promise<Resolved> {
  for (let depth = 0; depth < 8; depth++) {
    const what = `manifest ${desc.digest} in ${source.location}`;
    const b = bytes ?? (await readVerified(source, desc, MAX_MANIFEST_SIZE, what));
    bytes = undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(b.toString('utf8'));
    } catch (e) {
      throw new OciFormatError(`${what}: invalid JSON: ${(e as Error).message}`);
    }
    const kind = sniffManifestKind(parsed, desc.mediaType);
    if (kind === 'manifest') return { desc, bytes: b, manifest: parseManifest(b, what) };
    if (kind === 'index') {
      desc = pickFromIndex(parseIndex(b, what), platform, what);
      continue;
    }
    const mt = (parsed as { mediaType?: unknown })?.mediaType;
    throw new UnsupportedMediaTypeError(typeof mt === 'string' ? mt : desc.mediaType, what);
  }
  throw new OciFormatError(`${source.location}: image indexes nested too deeply at ${desc.digest}`);
}

async function resolveInLayout(source: BlobSource, tag: string | undefined, platform: Partial<Platform>): Promise<Resolved> {
  const idxBytes = (await source.readIndexJson())!;
  const where = `${source.location} index.json`;
  const index = parseIndex(idxBytes, where);
  const tags = index.manifests.map((d) => d.annotations?.[ANNOTATION_REF_NAME]).filter((t): t is string => t !== undefined);
  let desc: Descriptor | undefined;
  if (tag !== undefined) {
    desc = index.manifests.find((d) => d.annotations?.[ANNOTATION_REF_NAME] === tag);
    if (!desc)
      throw new ImageNotFoundError(
        `${source.location}: no image tagged ${JSON.stringify(tag)} (tags present: ${tags.length ? tags.map((t) => JSON.stringify(t)).join(', ') : 'none'})`,
        { tag, tags },
      );
  } else if (index.manifests.length === 1) {
    desc = index.manifests[0]!;
  } else if (index.manifests.length === 0) {
    throw new ImageNotFoundError(`${source.location}: index.json lists no images`);
  } else {
    throw new ImageNotFoundError(
      `${source.location}: index.json lists ${index.manifests.length} images; name one with :TAG (tags present: ${
        tags.map((t) => JSON.stringify(t)).join(', ') || 'none'
      })`,
      { tags },
    );
  }
  return descend(source, desc, platform);
}

async function resolveInSkopeoDir(source: SkopeoDirSource, platform: Partial<Platform>): Promise<Resolved> {
  const bytes = await source.readTopManifest();
  let mediaType: string = MediaType.OciManifest;
  try {
    const mt = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
    if (typeof mt === 'string') mediaType = mt;
  } catch {
    /* reported by descend */
  }
  return descend(source, { mediaType, digest: sha256Digest(bytes), size: bytes.length }, platform, bytes);
}

class OpenedImage implements OciImage {
  readonly layers: readonly Descriptor[];
  readonly diffIds: readonly string[];
  readonly manifestDigest: string;
  readonly configDigest: string;
  constructor(
    readonly ref: ImageReference,
    readonly source: BlobSource,
    readonly manifestDescriptor: Descriptor,
    readonly manifest: ImageManifest,
    readonly manifestBytes: Buffer,
    readonly config: ImageConfig,
    readonly configBytes: Buffer,
  ) {
    this.layers = manifest.layers;
    this.diffIds = config.rootfs.diff_ids;
    this.manifestDigest = manifestDescriptor.digest;
    this.configDigest = manifest.config.digest;
  }

  openBlob(desc: Descriptor, what?: string): Readable {
    return openVerifiedBlob(this.source, desc, what);
  }

  private layerAt(i: number): Descriptor {
    if (!Number.isInteger(i) || i < 0 || i >= this.layers.length)
      throw new OciError(`${this.source.location}: layer index ${i} out of range (image ${this.manifestDigest} has ${this.layers.length} layers)`);
    return this.layers[i]!;
  }

  openLayerCompressed(i: number): Readable {
    const d = this.layerAt(i);
    return this.openBlob(d, `layer ${i} blob ${d.digest} in ${this.source.location}`);
  }

  openLayer(i: number, opts: { limits?: Partial<ImportLimits> } = {}): Readable {
    const d = this.layerAt(i);
    const where = `layer ${i} (${d.digest}) of ${this.source.location}`;
    const comp = layerCompression(d.mediaType);
    if (comp === undefined) throw new UnsupportedMediaTypeError(d.mediaType, where);
    const limits = resolveLimits(opts.limits);
    const what = `layer ${i} blob ${d.digest} in ${this.source.location}`;
    const stages: Transform[] = [new VerifyStream({ digest: d.digest, size: d.size }, what)];
    const dec = decompressionStage(comp);
    if (dec) stages.push(dec, new DecompressedSizeLimit(limits, d.size, where));
    // Large layers are hashed (blob digest and diffid) on worker threads: the consumer, e.g. the
    // importer re-checksumming every object, is busy enough on this one.
    stages.push(new DiffIdCheck(i, d.digest, this.diffIds[i]!, { offThread: d.size >= OFF_THREAD_HASH_MIN }));
    return chain(this.source.openRaw(d.digest), stages, (e) =>
      e instanceof OstreeOciError
        ? e
        : (e as NodeJS.ErrnoException).syscall
        ? contextError(e, `${what}: read failed`)
        : contextError(e, `${where}: ${comp} decompression failed (${d.mediaType})`, LayerDecompressError),
    );
  }

  close(): Promise<void> {
    return this.source.close();
  }
}

/** Open a source for `ref` (pulling docker:// into a temp dir first). */
export async function openSource(ref: ImageReference, opts: TransportOptions & { platform?: Partial<Platform> } = {}): Promise<BlobSource> {
  switch (ref.transport) {
    case 'oci':
      return new OciDirSource(ref.path);
    case 'oci-archive':
      return OciArchiveSource.open(ref.path);
    case 'docker': {
      const temp = makeTemp(defaultTmpDir(opts), 'ostree-oci-pull-');
      const tmp = temp.path;
      const cleanup = (): Promise<void> => temp.remove();
      try {
        const platform: { os?: string; architecture?: string; variant?: string } = {};
        if (opts.platform?.os) platform.os = opts.platform.os;
        if (opts.platform?.architecture) platform.architecture = opts.platform.architecture;
        if (opts.platform?.variant) platform.variant = opts.platform.variant;
        const copyOpts: Parameters<typeof skopeoCopy>[2] = { platform, name: formatImageReference(ref) };
        if (opts.tlsVerify === false) copyOpts.srcTlsVerify = false;
        if (opts.authFile) copyOpts.authFile = opts.authFile;
        await skopeoCopy(formatImageReference(ref), `dir:${tmp}`, copyOpts);
      } catch (e) {
        await cleanup();
        throw e;
      }
      return new SkopeoDirSource(tmp, formatImageReference(ref), cleanup);
    }
  }
}

/**
 * Open the image `ref` names: resolve tag / index / platform, read and verify manifest and
 * config. Call close() when done (removes docker:// temp copies).
 */
export async function openImage(refIn: string | ImageReference, opts: OpenImageOptions = {}): Promise<OciImage> {
  const ref = toImageReference(refIn);
  const source = await openSource(ref, opts);
  try {
    const platform = opts.platform ?? {};
    const r =
      source instanceof SkopeoDirSource
        ? await resolveInSkopeoDir(source, platform)
        : await resolveInLayout(source, ref.transport === 'docker' ? undefined : ref.tag, platform);
    const m = r.manifest;
    const cwhere = `config ${m.config.digest} of manifest ${r.desc.digest} in ${source.location}`;
    if (!isConfigMediaType(m.config.mediaType)) throw new UnsupportedMediaTypeError(m.config.mediaType, cwhere);
    const configBytes = await readVerified(source, m.config, MAX_CONFIG_SIZE, cwhere);
    const config = parseConfig(configBytes, cwhere);
    if (config.rootfs.diff_ids.length !== m.layers.length)
      throw new OciFormatError(
        `${cwhere}: rootfs.diff_ids has ${config.rootfs.diff_ids.length} entries but the manifest has ${m.layers.length} layers`,
      );
    return new OpenedImage(ref, source, r.desc, m, r.bytes, config, configBytes);
  } catch (e) {
    await source.close();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface CommitOptions {
  /** Image config; `rootfs` is filled from the layers when absent, and checked when present. */
  config: Omit<ImageConfig, 'rootfs'> & { rootfs?: ImageConfig['rootfs'] };
  /** Manifest annotations. */
  annotations?: Record<string, string>;
  /** Tag in index.json (oci/oci-archive); default the reference's tag. */
  tag?: string;
  /**
   * Layers in manifest order. Default: every addLayer() call, in call order (not completion
   * order), which is what parallel compression needs.
   */
  layers?: LayerResult[];
  /** Without a tag: see PutManifestOptions.untagged (default 'replace-all'). */
  untagged?: 'replace-all' | 'append';
}

export interface CommitResult {
  /** Digest of the manifest as stored at the destination (for docker://, as the registry has it). */
  manifestDigest: string;
  manifest: ImageManifest;
  manifestDescriptor: Descriptor;
  configDescriptor?: Descriptor;
  /** The destination reference, formatted. */
  reference: string;
}

export interface ImageWriter {
  readonly ref: ImageReference;
  /** The layout being written (the destination itself for oci:, a temp dir otherwise). */
  readonly layout: OciLayoutWriter;
  /** Compress a tar stream into a layer; may be called several times concurrently. */
  addLayer(tar: Readable, opts?: LayerOptions): Promise<LayerResult>;
  /** Add an arbitrary blob (e.g. a copied layer); see OciLayoutWriter.addBlob. */
  addBlob(input: BlobInput, opts?: AddBlobOptions): Promise<{ digest: string; size: number }>;
  /** Write config + manifest, tag it, and finalise the destination (tar / push). */
  commit(opts: CommitOptions): Promise<CommitResult>;
  /** Low-level commit of a ready manifest whose blobs are all already in `layout`. */
  commitManifest(manifest: ImageManifest, opts?: { tag?: string; platform?: Platform; untagged?: 'replace-all' | 'append' }): Promise<CommitResult>;
  /** Drop temp files; the writer is unusable afterwards. */
  abort(): Promise<void>;
}

class Writer implements ImageWriter {
  private readonly pendingLayers: Promise<LayerResult>[] = [];
  private state: 'open' | 'committing' | 'done' = 'open';

  constructor(
    readonly ref: ImageReference,
    readonly layout: OciLayoutWriter,
    /** The temporary layout's directory (oci-archive:, docker://): removed when done either way. */
    private readonly temp: TempDir | undefined,
    /** Directories created for the destination (an archive's parents): removed by abort(). */
    private readonly created: TempDir | undefined,
    private readonly opts: TransportOptions,
  ) {}

  private checkOpen(): void {
    if (this.state !== 'open') throw new OciError(`image writer for ${formatImageReference(this.ref)} is already ${this.state === 'done' ? 'finished' : 'committing'}`);
  }

  addLayer(tar: Readable, opts?: LayerOptions): Promise<LayerResult> {
    this.checkOpen();
    const p = this.layout.addLayer(tar, opts);
    this.pendingLayers.push(p);
    p.catch(() => {}); // reported by commit (and to the caller of addLayer)
    return p;
  }

  addBlob(input: BlobInput, opts?: AddBlobOptions): Promise<{ digest: string; size: number }> {
    this.checkOpen();
    return this.layout.addBlob(input, opts);
  }

  async commit(opts: CommitOptions): Promise<CommitResult> {
    this.checkOpen();
    const layers = opts.layers ?? (await Promise.all(this.pendingLayers));
    const diffIds = layers.map((l) => l.diffId);
    const config = { ...opts.config } as ImageConfig;
    if (config.rootfs === undefined) config.rootfs = { type: 'layers', diff_ids: diffIds };
    else if (config.rootfs.diff_ids.length !== diffIds.length || config.rootfs.diff_ids.some((d, i) => d !== diffIds[i]))
      throw new OciError(`commit ${formatImageReference(this.ref)}: config.rootfs.diff_ids does not match the layers' diffids`, {
        config: config.rootfs.diff_ids,
        layers: diffIds,
      });
    if (typeof config.architecture !== 'string' || typeof config.os !== 'string')
      throw new OciError(`commit ${formatImageReference(this.ref)}: config needs architecture and os`);
    const configDescriptor = await this.layout.addJson(config, MediaType.OciConfig);
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: configDescriptor,
      layers: layers.map((l) => l.descriptor),
    };
    if (opts.annotations && Object.keys(opts.annotations).length > 0) manifest.annotations = { ...opts.annotations };
    const platform: Platform = { architecture: config.architecture, os: config.os };
    if (config.variant) platform.variant = config.variant;
    const r = await this.commitManifest(manifest, { tag: opts.tag, platform, untagged: opts.untagged });
    r.configDescriptor = configDescriptor;
    return r;
  }

  async commitManifest(
    manifest: ImageManifest,
    o: { tag?: string | undefined; platform?: Platform | undefined; untagged?: 'replace-all' | 'append' | undefined } = {},
  ): Promise<CommitResult> {
    this.checkOpen();
    this.state = 'committing';
    try {
      const tag = o.tag ?? (this.ref.transport === 'docker' ? undefined : this.ref.tag);
      const putOpts: Parameters<OciLayoutWriter['putManifest']>[1] = {};
      if (tag !== undefined && this.ref.transport !== 'docker') putOpts.tag = tag;
      if (o.platform) putOpts.platform = o.platform;
      if (o.untagged) putOpts.untagged = o.untagged;
      const desc = await this.layout.putManifest(manifest, putOpts);
      let manifestDigest = desc.digest;
      const reference = formatImageReference(
        tag !== undefined && this.ref.transport !== 'docker' ? { ...this.ref, tag } : this.ref,
      );
      if (this.ref.transport === 'oci-archive') {
        await packLayoutToArchive(this.layout.dir, this.ref.path);
      } else if (this.ref.transport === 'docker') {
        const digestFile = join(this.temp!.path, '.digest');
        const copyOpts: Parameters<typeof skopeoCopy>[2] = { digestFile, name: reference };
        if (this.opts.tlsVerify === false) copyOpts.destTlsVerify = false;
        if (this.opts.authFile) copyOpts.authFile = this.opts.authFile;
        await skopeoCopy(`oci:${this.layout.dir}`, reference, copyOpts);
        manifestDigest = (await readFile(digestFile, 'utf8')).trim();
      }
      this.state = 'done';
      await this.temp?.remove();
      this.created?.keep();
      return { manifestDigest, manifest, manifestDescriptor: { ...desc, digest: manifestDigest }, reference };
    } catch (e) {
      this.state = 'open';
      throw e;
    }
  }

  /** Drop temp files and whatever this writer added to the destination since it was opened. */
  async abort(): Promise<void> {
    this.state = 'done';
    await Promise.allSettled(this.pendingLayers);
    this.layout.rollback();
    await this.temp?.remove();
    await this.created?.remove();
  }
}

/**
 * Start writing an image to `ref`. For `oci:` blobs go straight into the destination layout; for
 * `oci-archive:` into a temp layout next to the archive, tarred on commit; for `docker://` into a
 * temp layout that commit pushes with skopeo. Until commit, abort() leaves the destination as it
 * was (an existing layout with the blobs it had, no new directories).
 */
export async function createImageWriter(refIn: string | ImageReference, opts: TransportOptions = {}): Promise<ImageWriter> {
  const ref = toImageReference(refIn);
  // Messages name the destination, not the temporary layout behind it.
  const name = ref.transport === 'docker' ? formatImageReference(ref) : `${ref.transport}:${ref.path}`;
  switch (ref.transport) {
    case 'oci':
      return new Writer(ref, await OciLayoutWriter.open(ref.path), undefined, undefined, opts);
    case 'oci-archive': {
      const target = resolve(ref.path);
      const st = await stat(target).catch(() => undefined);
      if (st?.isDirectory()) throw new UsageError(`oci-archive:${ref.path} is a directory (did you mean oci:${ref.path}?)`);
      let created: TempDir | undefined;
      let temp: TempDir | undefined;
      try {
        const first = mkdirSync(dirname(target), { recursive: true });
        if (first !== undefined) created = tempDirAt(first);
        temp = tempDirAt(mkdtempSync(join(dirname(target), `.${basename(target)}.layout-`)));
        return new Writer(ref, await OciLayoutWriter.open(temp.path, { name }), temp, created, opts);
      } catch (e) {
        await temp?.remove();
        await created?.remove();
        throw contextError(e as Error, `${name}: cannot create the archive`);
      }
    }
    case 'docker': {
      if (ref.digest !== undefined) throw new UsageError(`cannot push to a digest reference: ${formatImageReference(ref)} (use a tag)`);
      if (opts.authFile) checkAuthFile(opts.authFile); // before any layer is compressed
      const temp = makeTemp(defaultTmpDir(opts), 'ostree-oci-push-');
      try {
        return new Writer(ref, await OciLayoutWriter.open(join(temp.path, 'layout'), { name }), temp, undefined, opts);
      } catch (e) {
        await temp.remove();
        throw e;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// rewriteManifest

export type AnnotationsEditor = (
  annotations: Record<string, string>,
  manifest: Readonly<ImageManifest>,
) => Record<string, string> | void | Promise<Record<string, string> | void>;

export interface RewriteOptions extends OpenImageOptions {
  /** TLS verification for the source registry (default: tlsVerify). */
  srcTlsVerify?: boolean;
  /** TLS verification for the destination registry (default: tlsVerify). */
  destTlsVerify?: boolean;
}

export interface RewriteResult extends CommitResult {
  /** Manifest digest of the source image. */
  sourceManifestDigest: string;
}

/**
 * Copy the image `src` to `dst`, letting `edit` change only the manifest's annotations (it gets a
 * copy and returns the new map, or mutates the copy). Config and layer blobs are copied verified
 * and unchanged (skipped when the destination already has them, e.g. same layout); every other
 * manifest field is kept. Returns the new manifest digest.
 */
export async function rewriteManifest(
  src: string | ImageReference,
  dst: string | ImageReference,
  edit: AnnotationsEditor,
  opts: RewriteOptions = {},
): Promise<RewriteResult> {
  const srcOpts: OpenImageOptions = { ...opts };
  const sv = opts.srcTlsVerify ?? opts.tlsVerify;
  if (sv !== undefined) srcOpts.tlsVerify = sv;
  const img = await openImage(src, srcOpts);
  try {
    if (img.manifest.mediaType === MediaType.DockerManifest)
      throw new OciError(`${img.source.location}: manifest ${img.manifestDigest} is Docker schema 2, which has no annotations`);
    const dstOpts: TransportOptions = { ...opts };
    const dv = opts.destTlsVerify ?? opts.tlsVerify;
    if (dv !== undefined) dstOpts.tlsVerify = dv;
    const w = await createImageWriter(dst, dstOpts);
    try {
      for (const [i, d] of [img.manifest.config, ...img.manifest.layers].entries()) {
        const what = i === 0 ? `config ${d.digest}` : `layer ${i - 1} blob ${d.digest}`;
        await w.addBlob(() => img.openBlob(d, `${what} in ${img.source.location}`), { expected: { digest: d.digest, size: d.size }, what });
      }
      const manifest = structuredClone(img.manifest) as ImageManifest;
      const current = { ...(img.manifest.annotations ?? {}) };
      const edited = (await edit(current, img.manifest)) ?? current;
      for (const [k, v] of Object.entries(edited))
        if (typeof v !== 'string') throw new OciError(`rewriteManifest: annotation ${JSON.stringify(k)} must be a string`);
      if (Object.keys(edited).length > 0) manifest.annotations = { ...edited };
      else delete manifest.annotations;
      const platform: Platform = { architecture: img.config.architecture, os: img.config.os };
      if (img.config.variant) platform.variant = img.config.variant;
      const r = await w.commitManifest(manifest, { platform });
      return { ...r, sourceManifestDigest: img.manifestDigest };
    } catch (e) {
      await w.abort();
      throw e;
    }
  } finally {
    await img.close();
  }
}
