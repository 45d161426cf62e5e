/**
 * The image store: `ostree container image pull` done without losing commitmeta
 * (shared/specs/ostree-container-format.md §3.4, §3.5, §5). See README "Image store" for the
 * exact ref and metadata layout; in short:
 *
 *  - every layer is stored once under `ostree/container/blob/<escaped blob digest>`:
 *      · the ostree commit layer → the image's original commit **B** (with its commitmeta);
 *      · a chunk (object-set) layer → a synthetic commit, exactly as ostree-ext writes it: root
 *        dirmeta 0:0 040755, one root-level file per content object **named by its checksum**, no
 *        metadata, no parent, empty subject, timestamp 0. It keeps the chunk's objects reachable
 *        (for prune) and lets a later image that shares the chunk reuse it;
 *      · a derived layer → its layer commit (derived.ts);
 *  - a **pure ostree image** in `direct` mode (default): `ostree/container/image/<escaped imgref>`
 *    → **B itself** (signatures and `ostree.composefs.digest.v0` stay valid), and the manifest,
 *    its digest and the config go out of band to a metadata-only commit under
 *    `ostree/container/meta/<escaped imgref>`;
 *  - `merge` mode, and every **derived** image: the image ref → an ostree-ext-compatible merge
 *    commit **M** (metadata `ostree.container.image-config`, `ostree.manifest`,
 *    `ostree.manifest-digest`; parent = B, whose commitmeta is untouched; timestamp = image
 *    creation time). Without derived layers M's root is B's root, unchanged.
 *
 * Layers already in the store (same blob digest, or same diffid as a layer of a stored image) are
 * not read again. Everything a pull writes — objects, commits, commitmeta, refs — happens in one
 * repository transaction: on any error (or a killed process) no ref is written or changed.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { ObjectType } from '../../ostree-bindings/index.js';
import { CommitImporter, commitmetaMergeNotes, type ImportStats } from '../container/tar-import.js';
import type { ImportLimits } from '../limits.js';
import { TarReader } from '../container/tar-reader.js';
import { normalizeEntryPath, parseRepoPath, REPO_PREFIX } from '../container/paths.js';
import { LABEL_COMMIT, LABEL_FINAL_DIFFID } from '../container/encapsulate.js';
import { CommitVerificationError, NotOstreeImageError } from '../container/errors.js';
import type { Variant } from '../gvariant/codec.js';
import { serializeCommit, serializeDirTree, type Commit } from '../gvariant/ostree-types.js';
import {
  formatImageReference,
  parseConfig,
  parseManifest,
  toImageReference,
  type ImageConfig,
  type ImageManifest,
  type ImageReference,
} from '../oci/index.js';
import { sha256Hex } from '../ostree/checksum.js';
import type { Repo } from '../ostree/repo.js';
import { applyLayerCommit, baseAllowsNonUsr, importDerivedLayer, removeEmptyEtcFiles } from './derived.js';
import { ImageNotInStoreError, StoreError } from './errors.js';
import { ByteCounter, checkLayerMediaType, openLayerTar, openStoreImage, type StoreImage, type StoreImageOptions } from './image-source.js';
import { DEFAULT_DIRMETA, MDir, writeDirMeta, writeMetadataObject } from './mtree.js';
import {
  IMAGE_REF_PREFIX,
  LAYER_REF_PREFIX,
  imageRefFor,
  layerRefFor,
  metaRefFor,
  unprefixUnescapeRef,
} from './refescape.js';

export const META_MANIFEST = 'ostree.manifest';
export const META_MANIFEST_DIGEST = 'ostree.manifest-digest';
export const META_IMAGE_CONFIG = 'ostree.container.image-config';
/** In the metadata commit: the commit the image ref must point at. */
export const META_IMAGE_COMMIT = 'ostree-oci.image-commit';
/** In the metadata commit: the image reference (unescaped). */
export const META_IMAGE_REFERENCE = 'ostree-oci.image-reference';
export const ANNOTATION_CREATED = 'org.opencontainers.image.created';
export const ANNOTATION_COMPOSEFS = 'containers.composefs-digest';
const SIGNATURE_KEYS = ['ostree.sign.ed25519', 'ostree.gpgsigs'];

export type StoreMode = 'direct' | 'merge';
export type LayerRole = 'commit' | 'chunk' | 'derived';

export interface PullOptions extends StoreImageOptions {
  /** Pure ostree images: `direct` (default, image ref → original commit) or `merge`. */
  mode?: StoreMode;
  /** Caps on hostile input (src/limits.ts); unset ones come from OSTREE_OCI_LIMITS and the defaults. */
  limits?: Partial<ImportLimits>;
  onProgress?: (p: PullProgress) => void;
}

export interface PullProgress {
  layer: number;
  layers: number;
  role: LayerRole;
  /** Compressed bytes read so far from this layer. */
  bytes: number;
  size: number;
}

export interface PulledLayer {
  index: number;
  role: LayerRole;
  digest: string;
  diffId: string;
  mediaType: string;
  size: number;
  /** `fetched`: read from the source and imported; `reused`: its blob ref was there; `reused-by-diffid`. */
  action: 'fetched' | 'reused' | 'reused-by-diffid';
  ref: string;
  commit: string;
  /** Compressed bytes actually read (fetched layers). */
  bytesRead: number;
}

export interface CommitmetaInfo {
  present: boolean;
  size: number;
  keys: string[];
  signed: boolean;
}

export interface PullResult {
  imgref: string;
  imageRef: string;
  /** The metadata ref (direct mode), null for merge commits. */
  metaRef: string | null;
  metaCommit: string | null;
  mode: StoreMode;
  alreadyPresent: boolean;
  manifestDigest: string;
  configDigest: string;
  /** What the image ref points at. */
  commit: string;
  /** The image's ostree commit (B), null for non-ostree images. */
  baseCommit: string | null;
  previousCommit: string | null;
  previousManifestDigest: string | null;
  /** Detached metadata of the commit the image ref points at. */
  imageCommitmeta: CommitmetaInfo;
  /** Detached metadata of B. */
  baseCommitmeta: CommitmetaInfo | null;
  derivedLayers: number;
  layers: PulledLayer[];
  layersFetched: number;
  layersReused: number;
  /** Compressed layer bytes read from the source (see README on docker:// transports). */
  bytesFetched: number;
  /** Compressed size of the layers that were already in the store. */
  bytesReused: number;
  transport: StoreImage['transport'];
  /** Derived-layer entries dropped by the ostree-ext path filter. */
  filtered: Record<string, number>;
  removedFiles: string[];
  composefsAnnotation: string | null;
  notes: string[];
  importStats: ImportStats | null;
}

export interface ImageState {
  imgref: string;
  imageRef: string;
  commit: string;
  mode: StoreMode;
  baseCommit: string | null;
  metaRef: string | null;
  metaCommit: string | null;
  manifestDigest: string;
  manifestText: string;
  manifest: ImageManifest;
  configText: string;
  config: ImageConfig;
  /** sha256 of the stored manifest text equals the stored digest (true for our writes; ostree-ext stores canonical JSON). */
  manifestBytesExact: boolean;
}

interface Layout {
  ostree: boolean;
  chunks: number[];
  derived: number[];
}

/** ostree-ext's parse_manifest_layout; an image without `ostree.final-diffid` is all derived layers. */
function storeLayout(img: StoreImage): Layout {
  const where = `image ${img.manifestDigest} in ${img.location}`;
  const final = img.config.config?.Labels?.[LABEL_FINAL_DIFFID];
  if (final === undefined) return { ostree: false, chunks: [], derived: img.layers.map((_, i) => i) };
  const hits = img.diffIds.flatMap((d, i) => (d === final ? [i] : []));
  if (hits.length === 0) throw new NotOstreeImageError(`${where}: ${LABEL_FINAL_DIFFID} ${final} is not among the image's diff_ids`);
  if (hits.length > 1) throw new NotOstreeImageError(`${where}: multiple layers have diffid ${final} (${LABEL_FINAL_DIFFID})`);
  const idx = hits[0]!;
  return {
    ostree: true,
    chunks: Array.from({ length: idx }, (_, i) => i + 1),
    derived: Array.from({ length: img.layers.length - idx - 1 }, (_, i) => idx + 1 + i),
  };
}

const str = (value: string): Variant => ({ type: 's', value });

function metaString(c: Commit, key: string): string | undefined {
  const v = c.metadata.find(([k]) => k === key)?.[1];
  return v && v.type === 's' ? (v.value as string) : undefined;
}

/** JSON bytes as a GVariant string: must be valid UTF-8 without NUL. */
function jsonText(bytes: Buffer, what: string): string {
  const s = bytes.toString('utf8');
  if (s.includes('\0') || !Buffer.from(s, 'utf8').equals(bytes)) throw new StoreError(`${what} is not valid UTF-8 text; cannot store it in commit metadata`);
  return s;
}

/** RFC 3339 → seconds (manifest `org.opencontainers.image.created`, else config `created`). */
function imageTimestamp(img: { manifest: ImageManifest; config: ImageConfig }, fallback: bigint): bigint {
  for (const s of [img.manifest.annotations?.[ANNOTATION_CREATED], img.config.created]) {
    if (!s) continue;
    const ms = Date.parse(s);
    if (Number.isFinite(ms) && ms >= 0) return BigInt(Math.floor(ms / 1000));
  }
  return fallback;
}

export function commitmetaInfo(repo: Repo, commit: string): CommitmetaInfo {
  const bytes = repo.readCommitMetaBytes(commit);
  if (!bytes) return { present: false, size: 0, keys: [], signed: false };
  const meta = repo.readCommitMeta(commit) ?? [];
  const keys = meta.map(([k]) => k);
  const signed = meta.some(([k, v]) => SIGNATURE_KEYS.includes(k) && Array.isArray(v.value) && v.value.length > 0);
  return { present: true, size: bytes.length, keys, signed };
}

function emptyTreeRoot(repo: Repo): { tree: string; meta: string } {
  return {
    tree: writeMetadataObject(repo, ObjectType.DIR_TREE, serializeDirTree({ files: [], dirs: [] })),
    meta: writeDirMeta(repo, DEFAULT_DIRMETA),
  };
}

function writeCommit(repo: Repo, c: Commit): string {
  return writeMetadataObject(repo, ObjectType.COMMIT, serializeCommit(c));
}

/** ostree-ext's synthetic object-set commit for a chunk layer. */
export function writeObjectSetCommit(repo: Repo, objects: Iterable<string>): string {
  const names = [...new Set(objects)].sort();
  const tree = writeMetadataObject(repo, ObjectType.DIR_TREE, serializeDirTree({ files: names.map((c) => ({ name: c, checksum: c })), dirs: [] }));
  const meta = writeDirMeta(repo, DEFAULT_DIRMETA);
  return writeCommit(repo, { metadata: [], parent: null, related: [], subject: '', body: '', timestamp: 0n, rootTree: tree, rootMeta: meta });
}

/**
 * Tee a layer stream: the importer reads `main`; a second TarReader lists the `.file` objects in
 * it (for the object-set commit). A scanner failure never blocks the importer.
 */
function teeObjectList(src: Readable, what: string): { main: AsyncIterable<Buffer>; objects: Promise<string[]> } {
  const side = new PassThrough({ highWaterMark: 1 << 20 });
  let scanDone = false;
  const objects = (async () => {
    try {
      const r = new TarReader(side, `${what} (object list)`);
      const out: string[] = [];
      for (;;) {
        const e = await r.next();
        if (!e) break;
        if (e.type === '5') continue;
        // The importer validates every name; here only well-formed `.file` objects are listed.
        try {
          const p = normalizeEntryPath(e.path, what);
          if (!p.startsWith(REPO_PREFIX)) continue;
          const parsed = parseRepoPath(p.slice(REPO_PREFIX.length), what);
          if (parsed.kind === 'object' && parsed.type === 'file') out.push(parsed.checksum);
        } catch {
          continue;
        }
      }
      return out;
    } finally {
      scanDone = true;
      side.resume();
    }
  })();
  objects.catch(() => {});
  async function* main(): AsyncGenerator<Buffer> {
    try {
      for await (const c of src) {
        const b = c as Buffer;
        if (!scanDone && !side.write(b)) {
          await Promise.race([once(side, 'drain'), objects.then(() => {}, () => {})]);
        }
        yield b;
      }
      side.end();
    } finally {
      if (!side.writableEnded) side.destroy();
      src.destroy();
    }
  }
  return { main: main(), objects };
}

// ---------------------------------------------------------------------------------------------
// Reading the store

function parseStoredJson<T>(text: string, what: string, parse: (b: Buffer, w: string) => T): T {
  try {
    return parse(Buffer.from(text, 'utf8'), what);
  } catch (e) {
    throw new StoreError(`${what}: ${(e as Error).message}`);
  }
}

/** The stored state of `imgref`, or null when the store has no such image. */
export function readImageState(repo: Repo, imgrefIn: string | ImageReference): ImageState | null {
  const imgref = typeof imgrefIn === 'string' ? normalizeImgref(imgrefIn) : formatImageReference(imgrefIn);
  return readImageStateByRef(repo, imageRefFor(imgref), imgref);
}

function readImageStateByRef(repo: Repo, imageRef: string, imgref: string): ImageState | null {
  const commit = repo.resolveRevIfExists(imageRef);
  if (!commit) return null;
  const c = repo.loadCommit(commit).commit;
  const mRef = metaRefFor(imgref);
  let mode: StoreMode;
  let src: Commit;
  let metaCommit: string | null = null;
  // The metadata ref wins when it names this commit: B itself may carry ostree.manifest* keys
  // (an image built from a merge commit), which then describe some older image.
  metaCommit = repo.resolveRevIfExists(mRef);
  const meta = metaCommit ? repo.loadCommit(metaCommit).commit : null;
  if (meta && metaString(meta, META_IMAGE_COMMIT) === commit) {
    mode = 'direct';
    src = meta;
  } else if (metaString(c, META_MANIFEST_DIGEST) !== undefined) {
    mode = 'merge';
    src = c;
    metaCommit = null;
  } else if (meta) {
    throw new StoreError(
      `image ${imgref}: metadata commit ${metaCommit} (${mRef}) is for commit ${metaString(meta, META_IMAGE_COMMIT) ?? '(none)'}, but ${imageRef} points at ${commit}`,
    );
  } else {
    throw new StoreError(`image ${imgref}: ${imageRef} points at ${commit}, which has no ${META_MANIFEST_DIGEST} metadata, and ${mRef} does not exist`);
  }
  const where = `image ${imgref} (${mode === 'merge' ? `commit ${commit}` : `metadata commit ${metaCommit}`})`;
  const manifestDigest = metaString(src, META_MANIFEST_DIGEST);
  const manifestText = metaString(src, META_MANIFEST);
  const configText = metaString(src, META_IMAGE_CONFIG);
  if (!manifestDigest || !manifestText) throw new StoreError(`${where}: missing ${META_MANIFEST_DIGEST} or ${META_MANIFEST} metadata`);
  if (configText === undefined) throw new StoreError(`${where}: missing ${META_IMAGE_CONFIG} metadata`);
  const manifest = parseStoredJson(manifestText, `${where}: ${META_MANIFEST}`, parseManifest);
  const config = parseStoredJson(configText, `${where}: ${META_IMAGE_CONFIG}`, parseConfig);
  const baseCommit = mode === 'direct' ? commit : c.parent;
  return {
    imgref,
    imageRef,
    commit,
    mode,
    baseCommit,
    metaRef: mode === 'direct' ? mRef : null,
    metaCommit,
    manifestDigest,
    manifestText,
    manifest,
    configText,
    config,
    manifestBytesExact: `sha256:${sha256Hex(Buffer.from(manifestText, 'utf8'))}` === manifestDigest,
  };
}

function normalizeImgref(s: string): string {
  return formatImageReference(toImageReference(s));
}

/**
 * Every image ref of the store. A ref whose name does not unescape (written by another tool, or
 * by hand) is still listed, named by its raw suffix with `nameError` set: one such ref used to
 * make list, pull and prune fail as a whole.
 */
export function listImageRefs(repo: Repo): Array<{ imgref: string; imageRef: string; nameError?: string }> {
  const out: Array<{ imgref: string; imageRef: string; nameError?: string }> = [];
  for (const ref of [...repo.listRefs(IMAGE_REF_PREFIX).keys()].sort()) {
    try {
      out.push({ imgref: unprefixUnescapeRef(IMAGE_REF_PREFIX, ref), imageRef: ref });
    } catch (e) {
      out.push({ imgref: ref.slice(IMAGE_REF_PREFIX.length).replace(/^\//, ''), imageRef: ref, nameError: (e as Error).message });
    }
  }
  return out;
}

export interface ImageSummary {
  imgref: string;
  imageRef: string;
  commit: string;
  mode: StoreMode | null;
  manifestDigest: string | null;
  baseCommit: string | null;
  /** The commit the image ref points at carries signatures (ostree.sign.ed25519 / ostree.gpgsigs). */
  signed: boolean;
  baseSigned: boolean;
  derivedLayers: number | null;
  error?: string;
}

export function listImages(repo: Repo): ImageSummary[] {
  return listImageRefs(repo).map(({ imgref, imageRef, nameError }) => {
    const commit = repo.resolveRev(imageRef);
    try {
      if (nameError) throw new StoreError(`ref ${imageRef}: ${nameError} (remove it with ostree refs --delete)`);
      const s = readImageStateByRef(repo, imageRef, imgref)!;
      const base = s.baseCommit;
      return {
        imgref,
        imageRef,
        commit,
        mode: s.mode,
        manifestDigest: s.manifestDigest,
        baseCommit: base,
        signed: commitmetaInfo(repo, commit).signed,
        baseSigned: base ? repo.hasObject(ObjectType.COMMIT, base) && commitmetaInfo(repo, base).signed : false,
        derivedLayers: layoutOf(s).derived.length,
      };
    } catch (e) {
      return { imgref, imageRef, commit, mode: null, manifestDigest: null, baseCommit: null, signed: commitmetaInfo(repo, commit).signed, baseSigned: false, derivedLayers: null, error: (e as Error).message };
    }
  });
}

function layoutOf(s: ImageState): Layout {
  return storeLayout({
    manifest: s.manifest,
    config: s.config,
    layers: s.manifest.layers,
    diffIds: s.config.rootfs.diff_ids,
    manifestDigest: s.manifestDigest,
    location: s.imgref,
  } as unknown as StoreImage);
}

export interface ImageDetails extends ImageSummary {
  metaRef: string | null;
  metaCommit: string | null;
  configDigest: string;
  manifestBytesExact: boolean;
  labels: Record<string, string>;
  composefsAnnotation: string | null;
  imageCommitmeta: CommitmetaInfo;
  baseCommitmeta: CommitmetaInfo | null;
  composefsDigestV0: string | null;
  layers: Array<{ index: number; role: LayerRole; digest: string; diffId: string; size: number; ref: string; commit: string | null }>;
}

export function inspectImage(repo: Repo, imgrefIn: string): ImageDetails {
  const imgref = normalizeImgref(imgrefIn);
  const s = readImageState(repo, imgref);
  if (!s) throw new ImageNotInStoreError(`image ${imgref} is not in the store ${repo.path} (no ${imageRefFor(imgref)})`);
  const layout = layoutOf(s);
  const role = (i: number): LayerRole => (!layout.ostree ? 'derived' : i === 0 ? 'commit' : layout.chunks.includes(i) ? 'chunk' : 'derived');
  const commit = repo.loadCommit(s.baseCommit ?? s.commit).commit;
  const cfs = commit.metadata.find(([k]) => k === 'ostree.composefs.digest.v0')?.[1];
  const base = s.baseCommit && repo.hasObject(ObjectType.COMMIT, s.baseCommit) ? s.baseCommit : null;
  return {
    imgref,
    imageRef: s.imageRef,
    commit: s.commit,
    mode: s.mode,
    manifestDigest: s.manifestDigest,
    baseCommit: s.baseCommit,
    signed: commitmetaInfo(repo, s.commit).signed,
    baseSigned: base ? commitmetaInfo(repo, base).signed : false,
    derivedLayers: layout.derived.length,
    metaRef: s.metaRef,
    metaCommit: s.metaCommit,
    configDigest: s.manifest.config.digest,
    manifestBytesExact: s.manifestBytesExact,
    labels: s.config.config?.Labels ?? {},
    composefsAnnotation: s.manifest.annotations?.[ANNOTATION_COMPOSEFS] ?? null,
    imageCommitmeta: commitmetaInfo(repo, s.commit),
    baseCommitmeta: base ? commitmetaInfo(repo, base) : null,
    composefsDigestV0: cfs && Buffer.isBuffer(cfs.value) ? cfs.value.toString('hex') : null,
    layers: s.manifest.layers.map((d, i) => {
      const ref = layerRefFor(d.digest);
      return { index: i, role: role(i), digest: d.digest, diffId: s.config.rootfs.diff_ids[i]!, size: d.size, ref, commit: repo.resolveRevIfExists(ref) };
    }),
  };
}

/** diffid → (blob digest, commit) over every stored image whose layer ref exists. */
function diffIdIndex(repo: Repo): { byDiffId: Map<string, { digest: string; commit: string }>; claims: Map<string, Set<string>> } {
  // A layer reused by blob digest is never read, so the diffid its image claims for it is never
  // checked: only pairs that every stored image agrees on are used (and a pull reuses a stored
  // blob only when a stored image vouches for its diffid, else it reads and verifies it). Without
  // this, one image pairing a stored blob with a false diffid decides what a later image with that
  // diffid gets (test/store-diffid-poison.test.ts).
  const claims = new Map<string, Set<string>>();
  const pairs: Array<[string, string]> = [];
  for (const { imgref, imageRef } of listImageRefs(repo)) {
    let s: ImageState | null;
    try {
      s = readImageStateByRef(repo, imageRef, imgref);
    } catch {
      continue;
    }
    if (!s) continue;
    s.manifest.layers.forEach((d, i) => {
      const diffId = s!.config.rootfs.diff_ids[i];
      if (!diffId) return;
      let set = claims.get(d.digest);
      if (!set) claims.set(d.digest, (set = new Set()));
      set.add(diffId);
      pairs.push([diffId, d.digest]);
    });
  }
  const byDiffId = new Map<string, { digest: string; commit: string }>();
  for (const [diffId, digest] of pairs) {
    if (byDiffId.has(diffId) || claims.get(digest)!.size !== 1) continue;
    const commit = repo.resolveRevIfExists(layerRefFor(digest));
    if (commit) byDiffId.set(diffId, { digest, commit });
  }
  return { byDiffId, claims };
}

// ---------------------------------------------------------------------------------------------
// Pull

/** Pull `imgref` into the store (see the module comment). */
export async function pullImage(repo: Repo, imgrefIn: string | ImageReference, opts: PullOptions = {}): Promise<PullResult> {
  const ref = toImageReference(imgrefIn);
  const imgref = formatImageReference(ref);
  const imageRef = imageRefFor(imgref);
  const metaRef = metaRefFor(imgref);
  const previous = readImageStateOrNote(repo, imageRef, imgref);
  const img = await openStoreImage(ref, opts);
  try {
    const layout = storeLayout(img);
    img.layers.forEach((_, i) => checkLayerMediaType(img, i));
    const derived = layout.derived.length > 0;
    const mode: StoreMode = derived ? 'merge' : (opts.mode ?? 'direct');
    const notes: string[] = [...previous.notes];
    if (derived && opts.mode === 'direct') notes.push('the image has derived layers: stored as a merge commit (--store-mode=direct applies to pure ostree images only)');
    const roleOf = (i: number): LayerRole => (!layout.ostree ? 'derived' : i === 0 ? 'commit' : layout.chunks.includes(i) ? 'chunk' : 'derived');
    const labelCommit = layout.ostree ? img.config.config?.Labels?.[LABEL_COMMIT] : undefined;
    const where = `image ${img.manifestDigest} in ${img.location}`;
    const composefsAnnotation = img.manifest.annotations?.[ANNOTATION_COMPOSEFS] ?? null;

    const prev = previous.state;
    if (prev && prev.manifestDigest === img.manifestDigest && prev.mode === mode) {
      if (derived) notes.push(derivedNote(layout.derived.length, imageRef, prev.commit, prev.baseCommit, composefsAnnotation));
      return finishResult(repo, {
        imgref, imageRef, mode, alreadyPresent: true, img, prev, notes, composefsAnnotation, transport: img.transport,
        metaRef: prev.metaRef, metaCommit: prev.metaCommit, commit: prev.commit, baseCommit: prev.baseCommit,
        layers: img.layers.map((d, i) => {
          const lref = layerRefFor(d.digest);
          return { index: i, role: roleOf(i), digest: d.digest, diffId: img.diffIds[i]!, mediaType: d.mediaType, size: d.size, action: 'reused', ref: lref, commit: repo.resolveRevIfExists(lref) ?? '', bytesRead: 0 };
        }),
        filtered: {}, removedFiles: [], importStats: null,
      });
    }

    // Plan: which layers are already in the store.
    const { byDiffId, claims } = diffIdIndex(repo);
    const layers: PulledLayer[] = img.layers.map((d, i) => {
      const lref = layerRefFor(d.digest);
      let commit = repo.resolveRevIfExists(lref);
      // Reuse a stored blob only when the stored images say it has exactly this diffid.
      const vouched = claims.get(d.digest);
      if (commit && !(vouched?.size === 1 && vouched.has(img.diffIds[i]!))) commit = null;
      let action: PulledLayer['action'] = 'reused';
      if (!commit) {
        const alt = byDiffId.get(img.diffIds[i]!);
        if (alt) {
          commit = alt.commit;
          action = 'reused-by-diffid';
        }
      }
      if (commit && !repo.hasObject(ObjectType.COMMIT, commit)) commit = null;
      return { index: i, role: roleOf(i), digest: d.digest, diffId: img.diffIds[i]!, mediaType: d.mediaType, size: d.size, action: commit ? action : 'fetched', ref: lref, commit: commit ?? '', bytesRead: 0 };
    });
    if (layout.ostree && layers[0]!.commit && labelCommit !== undefined && layers[0]!.commit !== labelCommit) {
      throw new CommitVerificationError(`${where}: label ${LABEL_COMMIT} is ${labelCommit}, but the stored commit layer ${layers[0]!.ref} is ${layers[0]!.commit}`);
    }

    const total = img.layers.length;
    const open = (i: number): Readable => {
      const l = layers[i]!;
      let last = 0;
      const counter = new ByteCounter((n) => {
        l.bytesRead = n;
        const now = Date.now();
        if (opts.onProgress && now - last > 100) {
          last = now;
          opts.onProgress({ layer: i, layers: total, role: l.role, bytes: n, size: l.size });
        }
      });
      return openLayerTar(img, i, counter, opts.limits);
    };
    const layerName = (i: number): string => `layer ${i} (${img.layers[i]!.digest}) of ${img.location}`;

    const out = await repo.transaction(async () => {
      let base: string | null = null;
      let importStats: ImportStats | null = null;
      if (layout.ostree) {
        const missingChunks = layout.chunks.filter((i) => !layers[i]!.commit);
        const cl = layers[0]!;
        if (!cl.commit || missingChunks.length > 0) {
          const importer = new CommitImporter(repo, {
            ...(labelCommit ? { verifyCommit: labelCommit } : {}),
            ...(opts.limits ? { limits: opts.limits } : {}),
          });
          await importer.importLayer(open(0), 'commit', layerName(0));
          if (labelCommit !== undefined && labelCommit !== importer.checksum) {
            throw new CommitVerificationError(`${where}: label ${LABEL_COMMIT} is ${labelCommit}, but the commit layer holds ${importer.checksum}`);
          }
          const sets: Array<[number, string[]]> = [];
          for (const i of missingChunks) {
            const t = teeObjectList(open(i), layerName(i));
            await importer.importLayer(t.main, 'object-set', layerName(i));
            sets.push([i, await t.objects]);
          }
          const r = await importer.finish();
          notes.push(...commitmetaMergeNotes(r.checksum, r.commitmetaMerge));
          if (cl.commit && cl.commit !== r.checksum) {
            throw new StoreError(`${where}: ${cl.ref} points at ${cl.commit}, but the commit layer holds ${r.checksum}`);
          }
          base = r.checksum;
          importStats = r.stats;
          cl.commit = base;
          cl.action = 'fetched';
          for (const [i, objs] of sets) {
            layers[i]!.commit = writeObjectSetCommit(repo, objs);
            layers[i]!.action = 'fetched';
          }
        } else {
          base = cl.commit;
        }
      }

      let root: MDir | null = null;
      const filtered: Record<string, number> = {};
      let removedFiles: string[] = [];
      if (derived) {
        const allowNonUsr = base ? await baseAllowsNonUsr(repo, base) : true;
        if (base) {
          const b = repo.loadCommit(base).commit;
          root = new MDir(b.rootMeta, b.rootTree);
        } else root = new MDir(writeDirMeta(repo, DEFAULT_DIRMETA));
        const r0 = root;
        for (const i of layout.derived) {
          const l = layers[i]!;
          if (!l.commit) {
            const d = await importDerivedLayer(repo, open(i), layerName(i), {
              allowNonUsr,
              spoolDir: join(repo.path, 'tmp'),
              lowerLookup: (parts) => {
                const e = r0.lookup(repo, parts);
                return e?.kind === 'file' ? e.checksum : undefined;
              },
            });
            l.commit = d.commit;
            for (const [k, v] of Object.entries(d.filtered)) filtered[k] = (filtered[k] ?? 0) + v;
          }
          applyLayerCommit(repo, r0, l.commit);
        }
        removedFiles = removeEmptyEtcFiles(repo, r0);
      }

      for (const l of layers) repo.setRef(l.ref, l.commit);

      const baseCommit = base ? repo.loadCommit(base).commit : null;
      const timestamp = imageTimestamp(img, baseCommit?.timestamp ?? 0n);
      const manifestText = jsonText(img.manifestBytes, `manifest ${img.manifestDigest}`);
      const configText = jsonText(img.configBytes, `config ${img.configDigest}`);
      let commit: string;
      let metaCommit: string | null = null;
      if (mode === 'direct') {
        commit = base!;
        const empty = emptyTreeRoot(repo);
        metaCommit = writeCommit(repo, {
          metadata: [
            [META_IMAGE_COMMIT, str(base!)],
            [META_IMAGE_REFERENCE, str(imgref)],
            [META_IMAGE_CONFIG, str(configText)],
            [META_MANIFEST, str(manifestText)],
            [META_MANIFEST_DIGEST, str(img.manifestDigest)],
          ],
          parent: null,
          related: [],
          subject: '',
          body: '',
          timestamp,
          rootTree: empty.tree,
          rootMeta: empty.meta,
        });
        repo.setRef(imageRef, commit);
        repo.setRef(metaRef, metaCommit);
      } else {
        const rootTree = root ? root.writeTree(repo) : baseCommit!.rootTree;
        const rootMeta = root ? root.meta : baseCommit!.rootMeta;
        commit = writeCommit(repo, {
          metadata: [
            [META_IMAGE_CONFIG, str(configText)],
            [META_MANIFEST, str(manifestText)],
            [META_MANIFEST_DIGEST, str(img.manifestDigest)],
          ],
          parent: base,
          related: [],
          subject: '',
          body: '',
          timestamp,
          rootTree,
          rootMeta,
        });
        repo.setRef(imageRef, commit);
        if (repo.resolveRevIfExists(metaRef)) repo.setRef(metaRef, null);
      }
      return { base, commit, metaCommit, filtered, removedFiles, importStats };
    });

    if (derived) notes.push(derivedNote(layout.derived.length, imageRef, out.commit, out.base, composefsAnnotation));
    if (img.transport === 'skopeo-copy') notes.push('docker:// through skopeo copy: the whole image was downloaded to a temp dir; bytesFetched counts the layers imported');
    return finishResult(repo, {
      imgref, imageRef, mode, alreadyPresent: false, img, prev, notes, composefsAnnotation, transport: img.transport,
      metaRef: mode === 'direct' ? metaRef : null, metaCommit: out.metaCommit, commit: out.commit, baseCommit: out.base,
      layers, filtered: out.filtered, removedFiles: out.removedFiles, importStats: out.importStats,
    });
  } finally {
    await img.close();
  }
}

function derivedNote(n: number, imageRef: string, commit: string, base: string | null, composefsAnnotation: string | null): string {
  return (
    `the image has ${n} derived (non-ostree) layer(s): ${imageRef} points at merge commit ${commit}, which no signature covers` +
    (base ? ` (the signature on base commit ${base} does not cover it)` : '') +
    `; what verifies the deployed tree is the image's composefs annotation ${ANNOTATION_COMPOSEFS}` +
    (composefsAnnotation ? ` (${composefsAnnotation})` : ' (absent in this image)')
  );
}

function readImageStateOrNote(repo: Repo, imageRef: string, imgref: string): { state: ImageState | null; notes: string[] } {
  try {
    return { state: readImageStateByRef(repo, imageRef, imgref), notes: [] };
  } catch (e) {
    return { state: null, notes: [`the previous state of ${imageRef} was unreadable and is replaced: ${(e as Error).message}`] };
  }
}

interface ResultParts {
  imgref: string;
  imageRef: string;
  mode: StoreMode;
  alreadyPresent: boolean;
  img: StoreImage;
  prev: ImageState | null;
  notes: string[];
  composefsAnnotation: string | null;
  transport: StoreImage['transport'];
  metaRef: string | null;
  metaCommit: string | null;
  commit: string;
  baseCommit: string | null;
  layers: PulledLayer[];
  filtered: Record<string, number>;
  removedFiles: string[];
  importStats: ImportStats | null;
}

function finishResult(repo: Repo, p: ResultParts): PullResult {
  const fetched = p.layers.filter((l) => l.action === 'fetched');
  const reused = p.layers.filter((l) => l.action !== 'fetched');
  return {
    imgref: p.imgref,
    imageRef: p.imageRef,
    metaRef: p.metaRef,
    metaCommit: p.metaCommit,
    mode: p.mode,
    alreadyPresent: p.alreadyPresent,
    manifestDigest: p.img.manifestDigest,
    configDigest: p.img.configDigest,
    commit: p.commit,
    baseCommit: p.baseCommit,
    previousCommit: p.prev?.commit ?? null,
    previousManifestDigest: p.prev?.manifestDigest ?? null,
    imageCommitmeta: commitmetaInfo(repo, p.commit),
    baseCommitmeta: p.baseCommit ? commitmetaInfo(repo, p.baseCommit) : null,
    derivedLayers: p.layers.filter((l) => l.role === 'derived').length,
    layers: p.layers,
    layersFetched: fetched.length,
    layersReused: reused.length,
    bytesFetched: fetched.reduce((n, l) => n + l.bytesRead, 0),
    bytesReused: reused.reduce((n, l) => n + l.size, 0),
    transport: p.transport,
    filtered: p.filtered,
    removedFiles: p.removedFiles,
    composefsAnnotation: p.composefsAnnotation,
    notes: p.notes,
    importStats: p.importStats,
  };
}

// ---------------------------------------------------------------------------------------------
// Remove and prune

export interface RemoveResult {
  imgref: string;
  imageRef: string;
  commit: string;
  metaRef: string | null;
}

/** Delete an image's refs (image ref and metadata ref); layers stay until prune. */
export async function removeImage(repo: Repo, imgrefIn: string): Promise<RemoveResult> {
  return (await removeImages(repo, [imgrefIn]))[0]!;
}

/**
 * Remove several images at once: every one must be in the store (else an error naming the first
 * that is not, and nothing is removed), then all their refs go in one transaction.
 */
export async function removeImages(repo: Repo, imgrefs: string[]): Promise<RemoveResult[]> {
  const out: RemoveResult[] = [];
  for (const imgrefIn of imgrefs) {
    const imgref = normalizeImgref(imgrefIn);
    const imageRef = imageRefFor(imgref);
    const commit = repo.resolveRevIfExists(imageRef);
    if (!commit) throw new ImageNotInStoreError(`image ${imgref} is not in the store ${repo.path} (no ${imageRef}); nothing was removed`);
    const metaRef = metaRefFor(imgref);
    if (out.some((r) => r.imageRef === imageRef)) continue; // named twice
    out.push({ imgref, imageRef, commit, metaRef: repo.resolveRevIfExists(metaRef) !== null ? metaRef : null });
  }
  await repo.transaction(async () => {
    for (const r of out) {
      repo.setRef(r.imageRef, null);
      if (r.metaRef) repo.setRef(r.metaRef, null);
    }
  });
  return out;
}

export interface PruneResult {
  /** Layer refs deleted (no image uses their blob). */
  removedLayerRefs: Array<{ ref: string; digest: string; commit: string }>;
  keptLayerRefs: number;
  /** `ostree prune --refs-only` results, null with keepObjects. */
  objects: { total: number | null; deleted: number | null; freed: string | null; output: string } | null;
}

/**
 * Delete layer refs no stored image references (by blob digest), then (unless `keepObjects`) run
 * `ostree prune --refs-only`: every object not reachable from some ref (parents included) is
 * deleted. Refuses when an image's metadata cannot be read (its layers might be deleted).
 */
export async function pruneImages(repo: Repo, opts: { keepObjects?: boolean } = {}): Promise<PruneResult> {
  const used = new Set<string>();
  for (const { imgref, imageRef } of listImageRefs(repo)) {
    let s: ImageState | null;
    try {
      s = readImageStateByRef(repo, imageRef, imgref);
    } catch (e) {
      throw new StoreError(`refusing to prune (its layers might still be needed): ${(e as Error).message}; remove that image (image remove, or ostree refs --delete ${imageRef}) first`);
    }
    for (const d of s?.manifest.layers ?? []) used.add(d.digest);
  }
  const removed: PruneResult['removedLayerRefs'] = [];
  let kept = 0;
  const layerRefs = repo.listRefs(LAYER_REF_PREFIX);
  const toRemove: Array<[string, string, string]> = [];
  for (const [ref, commit] of [...layerRefs.entries()].sort()) {
    let digest: string;
    try {
      digest = unprefixUnescapeRef(LAYER_REF_PREFIX, ref);
    } catch {
      kept++;
      continue;
    }
    if (used.has(digest)) kept++;
    else toRemove.push([ref, digest, commit]);
  }
  if (toRemove.length) {
    await repo.transaction(async () => {
      for (const [ref] of toRemove) repo.setRef(ref, null);
    });
    for (const [ref, digest, commit] of toRemove) removed.push({ ref, digest, commit });
  }
  let objects: PruneResult['objects'] = null;
  if (!opts.keepObjects) {
    const output = await new Promise<string>((resolve, reject) => {
      execFile('ostree', ['prune', `--repo=${repo.path}`, '--refs-only'], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new StoreError(`ostree prune --refs-only failed: ${(stderr || err.message).trim()}`));
        else resolve(stdout);
      });
    });
    const num = (re: RegExp): number | null => {
      const m = re.exec(output);
      return m ? Number(m[1]) : null;
    };
    objects = {
      total: num(/Total objects:\s*(\d+)/),
      deleted: num(/Deleted (\d+) objects/) ?? (/No unreachable objects/.test(output) ? 0 : null),
      freed: /Deleted \d+ objects, (.+) freed/.exec(output)?.[1] ?? null,
      output: output.trim(),
    };
  }
  return { removedLayerRefs: removed, keptLayerRefs: kept, objects };
}
