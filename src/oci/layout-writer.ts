/**
 * Writing an OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/<hex>`).
 *
 * Blobs are streamed into a temp file in the layout root (`.ostree-oci-tmp-*`) while sha256 and
 * size are computed, then renamed to `blobs/sha256/<hex>`, over a file already there: a name and
 * a size say nothing about the bytes of an existing blob, the new ones were just hashed. A blob
 * added with its expected digest is not written again when an existing file hashes to it.
 * Several blobs/layers may be written at once. JSON documents are written as canonical JSON
 * (canonical-json.ts). index.json is replaced atomically (temp + rename); updates from one writer
 * are serialized, but there is no lock against other processes writing the same layout at the
 * same time.
 *
 * A layout is left as it was when writing fails: open() checks an existing `oci-layout` and
 * `index.json` before creating anything, and rollback() removes what the writer created since
 * index.json was last written (temp files, new blobs, the directory or files open() created).
 * rollback() is registered with cleanup.ts meanwhile, so an interrupted CLI does the same.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { onInterrupt, removePathSync } from '../cleanup.js';
import { canonicalJsonBytes } from './canonical-json.js';
import { checkZstdLevel, compressionStages, resolveLevel, ZstdWorkerCompressStream } from './compression.js';
import { digestHex, HashCounter, sha256Digest, VerifyStream, type Expected } from './digest.js';
import { OciError, OciFormatError } from './errors.js';
import { contextError } from './stream-util.js';
import {
  ANNOTATION_REF_NAME,
  checkDigest,
  MediaType,
  ociLayerMediaType,
  parseIndex,
  type Compression,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from './types.js';

export interface LayerOptions {
  /** Default 'gzip' (what ostree-ext writes). */
  compression?: Compression;
  /** gzip level 1 instead of 6 (ostree-ext `--compression-fast`); zstd level 1 instead of 3. */
  fast?: boolean;
  /** Explicit level; overrides `fast`. */
  level?: number;
  /** Annotations of the layer descriptor (e.g. `ostree.components`). */
  annotations?: Record<string, string>;
  /** Media type override (e.g. a Docker v2s2 layer type); must match the compression. */
  mediaType?: string;
}

export interface LayerResult {
  /** Descriptor of the stored (compressed) blob, ready for a manifest's `layers`. */
  descriptor: Descriptor;
  /** `sha256:` of the uncompressed tar (goes into config `rootfs.diff_ids`). */
  diffId: string;
  uncompressedSize: number;
  compression: Compression;
}

export type BlobInput = Readable | Buffer | (() => Readable);

export interface AddBlobOptions {
  /** Bytes must hash to this (and have this size): checked while writing, error otherwise. */
  expected?: Expected;
  /** Names the blob in error messages. */
  what?: string;
}

export interface PutManifestOptions {
  /** Tag (org.opencontainers.image.ref.name); an existing entry with the same tag is replaced. */
  tag?: string;
  /** Platform recorded in index.json's descriptor. */
  platform?: Platform;
  /**
   * Without a tag: 'replace-all' (default; index.json then holds exactly this manifest, as
   * ostree-ext's replace_with_single_manifest) or 'append' (keep other entries, drop an untagged
   * entry with the same digest).
   */
  untagged?: 'replace-all' | 'append';
}

const TMP_PREFIX = '.ostree-oci-tmp-';

export interface OpenLayoutOptions {
  /**
   * How messages name the layout (default `oci:DIR`): a temporary layout is named after what it
   * is written for (`oci-archive:FILE`, `docker://…`).
   */
  name?: string;
}

export class OciLayoutWriter {
  private indexQueue: Promise<unknown> = Promise.resolve();
  /** Created by open() and not yet referenced by a written index.json (rollback removes them). */
  private created: string[] = [];
  /** Blob files this writer put where there was none, since index.json was last written. */
  private readonly added = new Set<string>();
  /** Temp files being written. */
  private readonly temps = new Set<string>();
  private unregister: (() => void) | undefined;
  private rolledBack = false;

  private constructor(
    readonly dir: string,
    /** The layout as messages name it. */
    readonly name: string,
  ) {}

  /**
   * Open a layout directory for writing, creating it (and `oci-layout`, `blobs/sha256`) if
   * needed. An existing `oci-layout` and `index.json` are checked first: a layout this writer
   * could not update is refused before anything is written into it.
   */
  static async open(dir: string, opts: OpenLayoutOptions = {}): Promise<OciLayoutWriter> {
    const w = new OciLayoutWriter(dir, opts.name ?? `oci:${dir}`);
    const layoutFile = join(dir, 'oci-layout');
    try {
      const st = await stat(dir).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return undefined;
        throw e;
      });
      if (st && !st.isDirectory()) throw new OciFormatError(`${w.name}: ${dir} exists and is not a directory`);
      let hasLayoutFile = false;
      if (st) {
        const existing = await readFile(layoutFile).catch((e: NodeJS.ErrnoException) => {
          if (e.code === 'ENOENT') return undefined;
          throw e;
        });
        if (existing !== undefined) {
          hasLayoutFile = true;
          let v: unknown;
          try {
            v = JSON.parse(existing.toString('utf8'));
          } catch {
            throw new OciFormatError(`${w.name}: oci-layout is not valid JSON`);
          }
          if ((v as { imageLayoutVersion?: unknown })?.imageLayoutVersion !== '1.0.0')
            throw new OciFormatError(`${w.name}: oci-layout imageLayoutVersion is not "1.0.0"`);
        }
        await w.readIndex();
      }
      // Synchronous, so that what was created is recorded before a signal handler can run.
      const first = mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
      if (first !== undefined) w.track(() => w.created.push(first));
      if (!hasLayoutFile) {
        w.track(() => w.created.push(layoutFile));
        writeFileSync(layoutFile, canonicalJsonBytes({ imageLayoutVersion: '1.0.0' }), { flag: 'wx' });
      }
    } catch (e) {
      w.rollback();
      throw contextError(e as Error, `${w.name}: cannot create image layout`);
    }
    return w;
  }

  /** Record something rollback() must undo, registering rollback() for interruptions meanwhile. */
  private track(record: () => void): void {
    if (this.rolledBack) throw new OciError(`${this.name}: the layout writer was rolled back`);
    record();
    this.unregister ??= onInterrupt(() => this.rollback());
  }

  /** Unregister from interruptions once nothing is left to undo. */
  private release(): void {
    if (this.created.length === 0 && this.added.size === 0 && this.temps.size === 0) {
      this.unregister?.();
      this.unregister = undefined;
    }
  }

  /**
   * Remove what this writer created since index.json was last written: temp files, blobs that
   * were not there before, and what open() created (the directory itself when it did not exist).
   * Synchronous: it also runs from the CLI's signal handler. The writer is unusable afterwards.
   */
  rollback(): void {
    this.rolledBack = true;
    this.unregister?.();
    this.unregister = undefined;
    for (const p of [...this.temps, ...this.added, ...this.created.reverse()]) removePathSync(p);
    this.temps.clear();
    this.added.clear();
    this.created = [];
  }

  blobPath(digest: string): string {
    checkDigest(digest, `${this.name} blob`);
    return join(this.dir, 'blobs', 'sha256', digestHex(digest));
  }

  async hasBlob(digest: string, size?: number): Promise<boolean> {
    const st = await stat(this.blobPath(digest)).catch(() => undefined);
    return !!st && st.isFile() && (size === undefined || st.size === size);
  }

  /** Whether the stored blob's bytes hash to `digest` (a file with the right name may be damaged). */
  private async blobIntact(digest: string): Promise<boolean> {
    const h = createHash('sha256');
    try {
      for await (const c of createReadStream(this.blobPath(digest))) h.update(c as Buffer);
    } catch {
      return false;
    }
    return `sha256:${h.digest('hex')}` === digest;
  }

  /** A new temp file name in the layout root, removed by rollback() until untracked. */
  private newTemp(): string {
    const tmp = join(this.dir, `${TMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
    this.track(() => this.temps.add(tmp));
    return tmp;
  }

  private async dropTemp(tmp: string): Promise<void> {
    await rm(tmp, { force: true }).catch(() => {});
    this.temps.delete(tmp);
    this.release();
  }

  /**
   * Stream `stages` (the first one a source) into a temp file, then move it into place by digest,
   * replacing a file of that name. Returns digest and size of the stored bytes.
   */
  private async store(
    source: Readable,
    stages: Transform[],
    what: string,
    /** Digest and size of the stored bytes when the last stage computes them itself (no hashing here). */
    known?: () => { digest: string; size: number },
  ): Promise<{ digest: string; size: number }> {
    let tmp: string | undefined;
    const counter = known ? undefined : new HashCounter();
    try {
      tmp = this.newTemp();
      await pipeline([source, ...stages, ...(counter ? [counter] : []), createWriteStream(tmp, { flags: 'wx' })]);
      const { digest, size } = counter ? { digest: counter.digest, size: counter.size } : known!();
      const final = this.blobPath(digest);
      // Recorded before the rename, so that an interruption right after it removes the blob.
      const existed = await stat(final).then(
        () => true,
        () => false,
      );
      if (!existed) this.track(() => this.added.add(final));
      await rename(tmp, final);
      return { digest, size };
    } catch (e) {
      source.destroy(); // not consumed when there was no temp file
      throw contextError(e as Error, `${this.name}: writing ${what}`);
    } finally {
      if (tmp) await this.dropTemp(tmp);
    }
  }

  /**
   * Add a blob. With `expected`, an existing blob of that digest and size whose bytes hash to
   * the digest is reused without reading the input (a function input is then never called), and
   * new bytes are verified.
   */
  async addBlob(input: BlobInput, opts: AddBlobOptions = {}): Promise<{ digest: string; size: number }> {
    const what = opts.what ?? (opts.expected ? `blob ${opts.expected.digest}` : 'blob');
    if (opts.expected) {
      checkDigest(opts.expected.digest, what);
      if ((await this.hasBlob(opts.expected.digest, opts.expected.size)) && (await this.blobIntact(opts.expected.digest))) {
        if (input instanceof Readable) input.destroy();
        const st = await stat(this.blobPath(opts.expected.digest));
        return { digest: opts.expected.digest, size: st.size };
      }
    }
    const src = typeof input === 'function' ? input() : Buffer.isBuffer(input) ? Readable.from([input]) : input;
    const stages: Transform[] = opts.expected ? [new VerifyStream(opts.expected, what)] : [];
    return this.store(src, stages, what);
  }

  /** Store `value` as canonical JSON; returns its descriptor. */
  async addJson(value: unknown, mediaType: string, annotations?: Record<string, string>): Promise<Descriptor> {
    const bytes = canonicalJsonBytes(value);
    const digest = sha256Digest(bytes);
    await this.addBlob(bytes, { expected: { digest, size: bytes.length }, what: `${mediaType} blob` });
    const d: Descriptor = { mediaType, digest, size: bytes.length };
    if (annotations && Object.keys(annotations).length > 0) d.annotations = { ...annotations };
    return d;
  }

  /** Compress an uncompressed tar stream into a layer blob (see compression.ts). */
  async addLayer(tar: Readable, opts: LayerOptions = {}): Promise<LayerResult> {
    const compression = opts.compression ?? 'gzip';
    if (compression !== 'gzip' && compression !== 'zstd' && compression !== 'none')
      throw new OciError(`layer compression ${JSON.stringify(compression)} is not one of gzip, zstd, none`);
    const level = resolveLevel(compression, opts);
    let digest: string, size: number, diffId: string, uncompressedSize: number;
    if (compression === 'zstd') {
      // The compression worker hashes input (diffid) and output (blob digest) itself.
      const z = new ZstdWorkerCompressStream(checkZstdLevel(level), { hash: true });
      ({ digest, size } = await this.store(tar, [z], `${compression} layer`, () => z.digests));
      ({ uncompressedDigest: diffId, uncompressedSize } = z.digests);
    } else {
      const diff = new HashCounter();
      ({ digest, size } = await this.store(tar, [diff, ...compressionStages(compression, level)], `${compression} layer`));
      diffId = diff.digest;
      uncompressedSize = diff.size;
    }
    const descriptor: Descriptor = { mediaType: opts.mediaType ?? ociLayerMediaType(compression), digest, size };
    if (opts.annotations && Object.keys(opts.annotations).length > 0) descriptor.annotations = { ...opts.annotations };
    return { descriptor, diffId, uncompressedSize, compression };
  }

  /** Current index.json, or an empty index when there is none yet. */
  async readIndex(): Promise<ImageIndex> {
    const file = join(this.dir, 'index.json');
    const bytes = await readFile(file).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (!bytes) return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
    return parseIndex(bytes, `${this.name} index.json`);
  }

  /**
   * Replace index.json atomically (canonical JSON). What this writer created so far is then part
   * of the layout: rollback() no longer removes it.
   */
  async writeIndex(index: ImageIndex): Promise<void> {
    let tmp: string | undefined;
    let kept: { created: string[]; added: string[] } | undefined;
    try {
      tmp = this.newTemp();
      await writeFile(tmp, canonicalJsonBytes(index), { flag: 'wx' });
      // Settled before the rename: an interruption in between leaves unreferenced blobs, never an
      // index.json naming removed ones. Restored when the rename fails.
      kept = { created: this.created, added: [...this.added] };
      this.created = [];
      this.added.clear();
      await rename(tmp, join(this.dir, 'index.json'));
      kept = undefined;
    } catch (e) {
      if (kept && !this.rolledBack) {
        const k = kept;
        this.track(() => {
          this.created = k.created;
          for (const a of k.added) this.added.add(a);
        });
      }
      throw contextError(e as Error, `${this.name}: writing index.json`);
    } finally {
      if (tmp) await this.dropTemp(tmp);
    }
  }

  /** Apply `fn` to index.json under this writer's serialization. */
  updateIndex(fn: (index: ImageIndex) => ImageIndex | void): Promise<void> {
    const run = async (): Promise<void> => {
      const idx = await this.readIndex();
      await this.writeIndex(fn(idx) ?? idx);
    };
    const p = this.indexQueue.then(run, run);
    this.indexQueue = p.catch(() => {});
    return p;
  }

  /**
   * Store `manifest` (canonical JSON) and reference it from index.json. Returns the descriptor
   * written into index.json (digest = the manifest digest).
   */
  async putManifest(manifest: ImageManifest, opts: PutManifestOptions = {}): Promise<Descriptor> {
    const mediaType = manifest.mediaType ?? MediaType.OciManifest;
    const stored = await this.addJson(manifest, mediaType);
    const desc: Descriptor = { mediaType, digest: stored.digest, size: stored.size };
    if (opts.platform) desc.platform = { ...opts.platform };
    if (opts.tag !== undefined) desc.annotations = { [ANNOTATION_REF_NAME]: opts.tag };
    await this.updateIndex((idx) => {
      idx.mediaType ??= MediaType.OciIndex;
      if (opts.tag !== undefined) {
        idx.manifests = idx.manifests.filter((d) => d.annotations?.[ANNOTATION_REF_NAME] !== opts.tag);
        idx.manifests.push(desc);
      } else if ((opts.untagged ?? 'replace-all') === 'replace-all') {
        idx.manifests = [desc];
      } else {
        idx.manifests = idx.manifests.filter((d) => d.annotations?.[ANNOTATION_REF_NAME] !== undefined || d.digest !== desc.digest);
        idx.manifests.push(desc);
      }
    });
    return desc;
  }
}
