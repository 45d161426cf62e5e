/**
 * Splitting a commit's content objects into layers ("chunks").
 *
 * Three modes:
 *
 *  1. **Single layer** (default, as ostree-ext without content metadata): every object goes into
 *     the commit layer.
 *
 *  2. **Content metadata** (`--contentmeta FILE`, ostree-ext's `RawMeta` JSON:
 *     `{"version":1, "created"?, "labels"?, "layers": {id: name, …}, "mapping": {checksum: id, …}}`):
 *     one chunk per `layers` entry, in the byte order of their ids (ostree-ext reads them into a
 *     BTreeMap; JSON does not order object members, and JavaScript would put integer-like ids
 *     first whatever the file says), holding the objects mapped to it, then an empty
 *     "Reserved for new packages" chunk, as ostree-ext lays out images with few components.
 *     Objects the mapping does not mention stay in the commit layer; mapping entries for objects
 *     that are not in the commit are ignored, and so are components left without any object
 *     (ostree-ext builds its components from the mapped objects): their chunk would hold only the
 *     skeleton, byte-identical to the reserved one, and no importer accepts two layers with one
 *     diffid. No component with objects → no chunks at all (as ostree-ext). With `maxLayers` N
 *     (default MAX_CHUNKS = 64, ostree-ext's cap: half of the 128 layers overlayfs-based
 *     runtimes mount) there are at most N chunks, the reserved one included (ostree-ext's bins
 *     include it): the components get N − 1, the last one taking the overflow; N = 1 is one chunk
 *     of all components and no reserved chunk.
 *
 *  3. **Directory subtrees** (`maxLayers` without content metadata). Deterministic, and built so
 *     that a change in one part of the tree changes few layers:
 *     - every content object belongs to the directory of the first path it is found at (commit
 *       walk order: files, then subdirectories, both sorted); its size counts there;
 *     - target unit size T = the largest power of two ≤ total / maxLayers (at least 1 MiB).
 *       Quantizing T means growing or shrinking the tree does not move unit boundaries unless the
 *       total crosses a power of two;
 *     - units: walking from `/`, a directory whose subtree holds ≤ T bytes is one unit named by
 *       its path (`/usr/share/doc`); a bigger one is split: the files directly in it form one
 *       unit (named with a trailing slash, `/usr/lib/`), or, if those alone exceed T, one unit
 *       per file (named by its path), and each subdirectory is visited the same way. Subtrees
 *       without content produce no unit;
 *     - each unit goes to bin `jumpHash(sha256(unit name), maxLayers)` (Lamping–Veach jump
 *       consistent hash). The bin depends only on the unit's name, never on the sizes or
 *       positions of other units, so changing files inside one unit changes exactly one layer;
 *       adding or removing a subtree changes only the layers of the units it touches; and
 *       changing `maxLayers` from n to n+1 moves only ~1/(n+1) of the units;
 *     - non-empty bins become chunks, in bin order. A chunk's components are its unit names.
 *     The price is balance: bins are filled by hash, not by size, so layer sizes vary (every
 *     unit is at most T unless it is a single file).
 *
 * Chunk names follow ostree-ext (history `created_by`): no components → "Reserved for new
 * packages", one → its name, two to five → "a and b and c", more → "<n> components". The
 * `ostree.components` annotation is the sorted component names joined with ",".
 */
import { createHash } from 'node:crypto';
import { ObjectType } from '../../ostree-bindings/index.js';
import { UsageError } from '../errors.js';
import { parseRfc3339Seconds } from '../oci/rfc3339.js';
import { parseDirMeta, parseDirTree } from '../gvariant/ostree-types.js';
import { loadVerifiedMetadata } from '../ostree/verify-objects.js';
import type { LoadedCommit, Repo } from '../ostree/repo.js';
import type { ChunkMapping } from './tar-export.js';

export interface Chunk {
  /** History `created_by` of the layer. */
  name: string;
  /** Component names (packages, or subtree units); annotation `ostree.components`. */
  components: string[];
  mapping: ChunkMapping;
  size: number;
}

export interface Chunking {
  /** Objects written into the commit layer. */
  remainder: ChunkMapping;
  /** Content layers after the commit layer, in manifest order. */
  chunks: Chunk[];
}

/** ostree-ext's `--contentmeta` JSON (`RawMeta`). */
export interface ContentMeta {
  version: number;
  created?: string;
  labels?: Record<string, string>;
  /** Ordered: unique machine id → human-readable name. */
  layers: Record<string, string>;
  /** Content object checksum → layer id. */
  mapping: Record<string, string>;
  ordered?: boolean;
}

export const RESERVED_CHUNK_NAME = 'Reserved for new packages';

export function chunkName(components: string[]): string {
  if (components.length === 0) return RESERVED_CHUNK_NAME;
  if (components.length === 1) return components[0]!;
  if (components.length <= 5) return components.join(' and ');
  return `${components.length} components`;
}

export function componentsAnnotation(components: string[]): string {
  return [...components].sort().join(',');
}

export interface DirNode {
  path: string;
  /** Objects first seen in this directory. */
  own: string[];
  ownSize: number;
  /** Bytes of the objects first seen in this subtree. */
  total: number;
  /** Number of objects first seen in this subtree. */
  count: number;
  subdirs: DirNode[];
}

/** Size of a content object (payload bytes; 0 for symlinks), from its header. */
function objectSize(repo: Repo, checksum: string): number {
  const { info, stream } = repo.native.loadFile(checksum);
  stream?.close();
  return info.type === 'symlink' ? 0 : info.size;
}

/**
 * Every content object of the commit with its checkout paths (absolute, commit walk order), and
 * optionally the directory tree with sizes. Every dirtree and dirmeta is re-hashed on the way, so
 * a corrupt tree fails here, before any layer is written.
 */
export function collectContent(
  repo: Repo,
  commit: LoadedCommit,
  withSizes: boolean,
): { mapping: ChunkMapping; tree: DirNode; total: number } {
  const mapping: ChunkMapping = new Map();
  const trees = new Map<string, ReturnType<typeof parseDirTree>>();
  const loadTree = (c: string, path: string): ReturnType<typeof parseDirTree> => {
    let t = trees.get(c);
    if (!t) {
      t = parseDirTree(loadVerifiedMetadata(repo, ObjectType.DIR_TREE, c, path), `dirtree ${c}`);
      trees.set(c, t);
    }
    return t;
  };
  const metas = new Set<string>();
  const checkMeta = (c: string, path: string): void => {
    if (metas.has(c)) return;
    parseDirMeta(loadVerifiedMetadata(repo, ObjectType.DIR_META, c, path), `dirmeta ${c}`);
    metas.add(c);
  };
  const visit = (path: string, treeCsum: string): DirNode => {
    const node: DirNode = { path, own: [], ownSize: 0, total: 0, count: 0, subdirs: [] };
    const t = loadTree(treeCsum, path);
    const base = path === '/' ? '' : path;
    for (const f of t.files) {
      const p = `${base}/${f.name}`;
      const e = mapping.get(f.checksum);
      if (e) {
        e.paths.push(p);
        continue;
      }
      const size = withSizes ? objectSize(repo, f.checksum) : 0;
      mapping.set(f.checksum, { size, paths: [p] });
      node.own.push(f.checksum);
      node.ownSize += size;
    }
    node.total = node.ownSize;
    node.count = node.own.length;
    for (const d of t.dirs) {
      checkMeta(d.meta, `${base}/${d.name}`);
      const sub = visit(`${base}/${d.name}`, d.tree);
      node.subdirs.push(sub);
      node.total += sub.total;
      node.count += sub.count;
    }
    return node;
  };
  checkMeta(commit.commit.rootMeta, '/');
  const tree = visit('/', commit.commit.rootTree);
  return { mapping, tree, total: tree.total };
}

/** Lamping & Veach jump consistent hash of a 64-bit key into [0, buckets). */
export function jumpHash(key: bigint, buckets: number): number {
  let b = -1;
  let j = 0;
  let k = BigInt.asUintN(64, key);
  while (j < buckets) {
    b = j;
    k = BigInt.asUintN(64, k * 2862933555777941757n + 1n);
    j = Math.floor((b + 1) * (2 ** 31 / (Number(k >> 33n) + 1)));
  }
  return b;
}

function unitBin(name: string, bins: number): number {
  const h = createHash('sha256').update(name).digest();
  return jumpHash(h.readBigUInt64BE(0), bins);
}

function subtreeObjects(n: DirNode, out: string[]): string[] {
  out.push(...n.own);
  for (const s of n.subdirs) subtreeObjects(s, out);
  return out;
}

/** Mode 3 (see module comment). */
export function chunkBySubtrees(tree: DirNode, mapping: ChunkMapping, maxChunks: number): Chunk[] {
  if (!Number.isInteger(maxChunks) || maxChunks < 1) throw new UsageError(`--max-layers must be a positive integer, got ${maxChunks}`);
  const MIN_UNIT = 1 << 20;
  const ideal = tree.total / maxChunks;
  const target = ideal <= MIN_UNIT ? MIN_UNIT : 2 ** Math.floor(Math.log2(ideal));
  const units: Array<{ name: string; objects: string[] }> = [];
  const visit = (n: DirNode): void => {
    if (n.count === 0) return;
    if (n.total <= target) {
      units.push({ name: n.path, objects: subtreeObjects(n, []) });
      return;
    }
    if (n.ownSize <= target) {
      if (n.own.length) units.push({ name: n.path === '/' ? '/' : `${n.path}/`, objects: n.own });
    } else {
      // A directory whose own files alone are too big: each file is a unit.
      for (const c of n.own) units.push({ name: mapping.get(c)!.paths[0]!, objects: [c] });
    }
    for (const s of n.subdirs) visit(s);
  };
  visit(tree);
  const bins: Array<Array<{ name: string; objects: string[] }>> = Array.from({ length: maxChunks }, () => []);
  for (const u of units) bins[unitBin(u.name, maxChunks)]!.push(u);
  const chunks: Chunk[] = [];
  for (const bin of bins) {
    if (bin.length === 0) continue;
    const m: ChunkMapping = new Map();
    let size = 0;
    for (const u of bin) {
      for (const c of u.objects) {
        const e = mapping.get(c)!;
        m.set(c, e);
        size += e.size;
      }
    }
    const components = bin.map((u) => u.name).sort();
    chunks.push({ name: chunkName(components), components, mapping: m, size });
  }
  return chunks;
}

/** Validate parsed `--contentmeta` JSON. */
export function parseContentMeta(json: unknown, where: string): ContentMeta {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(json)) throw new UsageError(`${where}: content metadata must be a JSON object`);
  if (json['version'] !== 1) throw new UsageError(`${where}: unsupported metadata version ${JSON.stringify(json['version'])} (supported: 1)`);
  if (json['ordered'] === true) throw new UsageError(`${where}: "ordered": true is not supported`);
  for (const key of ['layers', 'mapping'] as const) {
    const v = json[key];
    if (!isObj(v)) throw new UsageError(`${where}: "${key}" must be an object of strings`);
    for (const [k, s] of Object.entries(v)) if (typeof s !== 'string') throw new UsageError(`${where}: ${key}[${JSON.stringify(k)}] must be a string`);
  }
  if (json['labels'] !== undefined) {
    if (!isObj(json['labels'])) throw new UsageError(`${where}: "labels" must be an object of strings`);
    for (const [k, s] of Object.entries(json['labels'])) if (typeof s !== 'string') throw new UsageError(`${where}: labels[${JSON.stringify(k)}] must be a string`);
  }
  if (json['created'] !== undefined && typeof json['created'] !== 'string') throw new UsageError(`${where}: "created" must be a string`);
  if (typeof json['created'] === 'string' && parseRfc3339Seconds(json['created']) === null) {
    throw new UsageError(`${where}: "created" ${JSON.stringify(json['created'])} is not an RFC 3339 date-time (like 2024-01-02T03:04:05Z)`);
  }
  const meta = json as unknown as ContentMeta;
  for (const [csum, id] of Object.entries(meta.mapping)) {
    if (!Object.prototype.hasOwnProperty.call(meta.layers, id)) {
      throw new UsageError(`${where}: mapping of object ${csum} names layer ${JSON.stringify(id)}, which is not in "layers"`);
    }
  }
  return meta;
}

/** Chunks a content-metadata image has at most without `--max-layers` (ostree-ext's MAX_CHUNKS). */
export const MAX_CHUNKS = 64;

/** Mode 2 (see module comment). */
export function chunkByContentMeta(meta: ContentMeta, mapping: ChunkMapping, maxLayers: number = MAX_CHUNKS): Chunking {
  if (!Number.isInteger(maxLayers) || maxLayers < 1) {
    throw new UsageError(`--max-layers must be a positive integer, got ${maxLayers}`);
  }
  const ids = Object.keys(meta.layers).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const byId = new Map<string, ChunkMapping>(ids.map((id) => [id, new Map()]));
  const remainder: ChunkMapping = new Map();
  for (const [csum, e] of mapping) {
    const id = meta.mapping[csum];
    if (id === undefined) remainder.set(csum, e);
    else byId.get(id)!.set(csum, e);
  }
  let groups = ids.filter((id) => byId.get(id)!.size > 0).map((id) => ({ ids: [id], mapping: byId.get(id)! }));
  if (groups.length === 0) return { remainder, chunks: [] };
  const reserve = maxLayers >= 2;
  const room = reserve ? maxLayers - 1 : 1;
  if (groups.length > room) {
    const head = groups.slice(0, room - 1);
    const tail = groups.slice(room - 1);
    const merged: ChunkMapping = new Map();
    for (const g of tail) for (const [c, e] of g.mapping) merged.set(c, e);
    groups = [...head, { ids: tail.flatMap((g) => g.ids), mapping: merged }];
  }
  const chunks: Chunk[] = groups.map((g) => {
    let size = 0;
    for (const e of g.mapping.values()) size += e.size;
    const components = g.ids.map((id) => meta.layers[id]!);
    return { name: g.ids.length === 1 ? g.ids[0]! : chunkName(g.ids), components, mapping: g.mapping, size };
  });
  if (reserve) chunks.push({ name: RESERVED_CHUNK_NAME, components: [], mapping: new Map(), size: 0 });
  return { remainder, chunks };
}
