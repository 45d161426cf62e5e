/**
 * Derived (non-ostree) layers, as ostree-ext's `tar/write.rs` + merge (shared/specs/
 * ostree-container-format.md §2.6, §3.4):
 *
 * 1. `importDerivedLayer`: the layer's tar becomes a **layer commit** (stored under the layer's blob
 *    ref, so a later pull reuses it). Paths are normalized (leading `/` and `./` dropped, `..`
 *    refused) and filtered by their first component: `usr` kept, `etc` → `usr/etc`, `var` kept
 *    (ostree ≥ 2024.3 behaviour, no `usr/share/factory/var` remap), `run`/`tmp`/`proc`/`sys`/`dev`
 *    keep the directory itself but drop its children, anything else is dropped unless the base
 *    has a transient / composefs root (`allowNonUsr`, as upstream). Dropped entries are counted
 *    (`filtered`, keyed like upstream: the child name for the five directories above, else the
 *    top-level name). Parents are created as needed (root:root 0755). Whiteouts (`.wh.NAME`,
 *    `.wh..wh..opq`) are committed literally, as upstream does. Regular files and symlinks become
 *    content objects whose checksum is computed here from header (uid, gid, mode, PAX
 *    `SCHILY.xattr.*`) + bytes as they stream (files over 1 MiB are spooled to a temp file
 *    meanwhile), then written with a verifying write (`Repo.writeContent`, re-hashed by
 *    libostree). Hardlinks resolve to the target's content object (same layer first, then the
 *    tree below). Devices, FIFOs and sockets outside the dropped directories are refused.
 *    Modified hardlinks into the object store (upstream issue #405): a container build that
 *    changes a file of the base re-tars it under `sysroot/ostree/repo/objects/…` (mtime > 0) with
 *    its paths as hardlinks to it. Such a file is stored as a content object but not placed; the
 *    first later hardlink (mtime > 0) to it becomes that file at the link's path, and further
 *    links to it name the same object. A modified link to anything else in the object store is
 *    dropped (counted under `sysroot`), as upstream. Unlike upstream, the link's path goes through
 *    the same mapping as every other path (`etc` → `usr/etc`, top-level filter).
 *    The layer commit has no metadata, no parent and timestamp 0 (deterministic).
 *
 * 2. `applyLayerCommit`: applies a layer commit on the merged tree, OCI/overlayfs style, as
 *    libostree's checkout with `process_whiteouts` does: an opaque marker empties the directory
 *    (which then takes the layer's directory metadata), `.wh.NAME` removes NAME, then the layer's
 *    entries are added (files replace; directories merge and keep the existing directory's
 *    metadata, as a union checkout does).
 *
 * 3. After the last layer, empty `usr/etc/hostname` and `usr/etc/resolv.conf` are removed (as
 *    upstream). No SELinux relabeling is done (no policy is loaded): derived content keeps the
 *    labels it carries in PAX records.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { finished } from 'node:stream/promises';
import { ObjectType } from '../../ostree-bindings/index.js';
import { serializeCommit, sortXattrs, type DirMeta, type FileHeader, type OstreeXattr } from '../gvariant/ostree-types.js';
import { ContentHasher, contentChecksum } from '../ostree/checksum.js';
import { bareUserOnlyLosses, type Repo } from '../ostree/repo.js';
import { TarReader, type TarEntry } from '../container/tar-reader.js';
import { REPO_PREFIX } from '../container/paths.js';
import { DerivedLayerError } from './errors.js';
import { DEFAULT_DIRMETA, MDir, writeDirMeta, writeMetadataObject, type MEntry } from './mtree.js';

const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;
const SMALL = 1 << 20;
const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';
const EXCLUDED_TOPLEVEL = new Set(['run', 'tmp', 'proc', 'sys', 'dev']);

export interface DerivedImportOptions {
  /** Keep top-level directories other than usr/etc/var (transient / composefs root, or no base). */
  allowNonUsr: boolean;
  /** Where files over 1 MiB are spooled while their checksum is computed (ideally on the repo's filesystem). */
  spoolDir: string;
  /** Content checksum of a path in the tree below this layer (hardlink targets from lower layers). */
  lowerLookup?: (parts: readonly string[]) => string | undefined;
  onEntry?: (path: string, bytes: number) => void;
}

export interface DerivedLayerCommit {
  commit: string;
  /** Entries dropped by the path filter, by name (as ostree-ext's `WriteTarResult.filtered`). */
  filtered: Record<string, number>;
  entries: number;
  /** Content objects written / already present. */
  filesWritten: number;
  filesAlreadyPresent: number;
  contentBytes: number;
}

type Mapped = { keep: true; parts: string[] } | { keep: false; key: string };

/** Normalize an entry path into components (`''` → root), refusing traversal. */
export function normalizeLayerPath(raw: string, what: string): string[] {
  if (raw.includes('\0')) throw new DerivedLayerError(`${what}: path ${JSON.stringify(raw)} contains a NUL byte`, { path: raw });
  const out: string[] = [];
  for (const c of raw.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw new DerivedLayerError(`${what}: invalid path ${JSON.stringify(raw)} (contains "..")`, { path: raw });
    out.push(c);
  }
  return out;
}

/** ostree-ext's top-level filter and `etc` → `usr/etc` remap. */
export function mapLayerPath(parts: string[], allowNonUsr: boolean): Mapped {
  if (parts.length === 0) return { keep: true, parts };
  const [first, ...rest] = parts as [string, ...string[]];
  if (first === 'usr' || first === 'var') return { keep: true, parts };
  if (first === 'etc') return { keep: true, parts: ['usr', 'etc', ...rest] };
  if (EXCLUDED_TOPLEVEL.has(first)) return rest.length ? { keep: false, key: rest[0]! } : { keep: true, parts };
  if (allowNonUsr) return { keep: true, parts };
  return { keep: false, key: first };
}

function paxXattrs(e: TarEntry, at: string): OstreeXattr[] {
  const xs: OstreeXattr[] = [];
  for (const [k, v] of e.pax) {
    if (!k.startsWith('SCHILY.xattr.')) continue;
    const name = k.slice('SCHILY.xattr.'.length);
    if (name === '') throw new DerivedLayerError(`${at}: empty xattr name in PAX record`);
    xs.push({ name: Buffer.from(name, 'utf8'), value: v });
  }
  try {
    return sortXattrs(xs, at);
  } catch (err) {
    throw new DerivedLayerError((err as Error).message);
  }
}

class LayerTree {
  readonly root: MDir;
  private readonly defaultMeta: string;
  constructor(private readonly repo: Repo) {
    this.defaultMeta = writeDirMeta(repo, DEFAULT_DIRMETA);
    this.root = new MDir(this.defaultMeta);
  }

  /** The directory at `parts`, created (root:root 0755) where missing; a file in the way is replaced. */
  dir(parts: readonly string[]): MDir {
    let cur = this.root;
    for (const p of parts) {
      const kids = cur.entries(this.repo);
      const e = kids.get(p);
      if (e && e.kind === 'dir') cur = e;
      else {
        const d = new MDir(this.defaultMeta);
        kids.set(p, d);
        cur = d;
      }
    }
    return cur;
  }

  set(parts: readonly string[], entry: MEntry): void {
    const parent = this.dir(parts.slice(0, -1));
    parent.entries(this.repo).set(parts[parts.length - 1]!, entry);
  }
}

async function writeFileContent(
  repo: Repo,
  r: TarReader,
  header: FileHeader,
  size: number,
  spoolDir: string,
  at: string,
): Promise<{ checksum: string; written: boolean }> {
  if (size <= SMALL) {
    const body = size ? await r.readBody(SMALL) : Buffer.alloc(0);
    const checksum = contentChecksum(header, body);
    if (repo.hasObject(ObjectType.FILE, checksum)) return { checksum, written: false };
    await repo.writeContent(checksum, { header, payload: body });
    return { checksum, written: true };
  }
  // Large: hash while spooling, then a verifying write from the spool file.
  await mkdir(spoolDir, { recursive: true });
  const spool = join(spoolDir, `ostree-oci-spool-${process.pid}-${randomBytes(6).toString('hex')}`);
  const h = new ContentHasher(header);
  const out = createWriteStream(spool, { mode: 0o600 });
  try {
    try {
      for await (const chunk of r.body()) {
        h.update(chunk);
        if (!out.write(chunk)) await new Promise<void>((res, rej) => {
          out.once('drain', res);
          out.once('error', rej);
        });
      }
      out.end();
      await finished(out);
    } catch (e) {
      out.destroy();
      throw e;
    }
    if (h.bytes !== size) throw new DerivedLayerError(`${at}: read ${h.bytes} bytes, header says ${size}`);
    const checksum = h.digest();
    if (repo.hasObject(ObjectType.FILE, checksum)) return { checksum, written: false };
    await repo.writeContent(checksum, { header, payload: { stream: createReadStream(spool), length: size } });
    return { checksum, written: true };
  } finally {
    await unlink(spool).catch(() => {});
  }
}

/** Whether a normalized layer path lies in the image's object store (`sysroot/ostree/repo/…`). */
const inObjectStore = (parts: readonly string[]): boolean => `${parts.join('/')}/`.startsWith(REPO_PREFIX) && parts.length > 3;

/** A regular file or symlink entry as a content object (written unless present). */
async function writeEntryContent(repo: Repo, r: TarReader, e: TarEntry, at: string, spoolDir: string): Promise<{ checksum: string; written: boolean }> {
  const isLink = e.type === '2';
  if (isLink && e.linkname === '') throw new DerivedLayerError(`${at}: symlink with an empty target`);
  const header: FileHeader = {
    uid: e.uid,
    gid: e.gid,
    mode: (isLink ? S_IFLNK : S_IFREG) | (isLink ? 0o777 : e.mode & 0o7777),
    rdev: 0,
    symlinkTarget: isLink ? e.linkname : '',
    xattrs: paxXattrs(e, at),
  };
  if (repo.mode === 'bare-user-only') {
    const lost = bareUserOnlyLosses(header);
    if (lost.length) {
      throw new DerivedLayerError(`${at}: has ${lost.join(', ')}, which a bare-user-only repository (${repo.path}) cannot store; pull into a bare-user repository`, { path: e.path });
    }
  }
  try {
    return await writeFileContent(repo, r, header, isLink ? 0 : e.size, spoolDir, at);
  } catch (err) {
    if (err instanceof DerivedLayerError) throw err;
    throw new DerivedLayerError(`${at}: ${(err as Error).message}`, { path: e.path });
  }
}

/** Import one derived layer's tar as a layer commit (see the module comment). */
export async function importDerivedLayer(
  repo: Repo,
  input: AsyncIterable<Buffer>,
  what: string,
  opts: DerivedImportOptions,
): Promise<DerivedLayerCommit> {
  const r = new TarReader(input, what);
  const tree = new LayerTree(repo);
  const res: DerivedLayerCommit = { commit: '', filtered: {}, entries: 0, filesWritten: 0, filesAlreadyPresent: 0, contentBytes: 0 };
  const links: Array<{ parts: string[]; target: string[]; at: string }> = [];
  // Modified object-store files (rule 1 of the module comment): path → their content object, until
  // the first modified hardlink takes it; then path → that object for the links after it.
  const heldObjects = new Map<string, string>();
  const takenObjects = new Map<string, string>();
  const filter = (key: string): void => void (res.filtered[key] = (res.filtered[key] ?? 0) + 1);
  try {
    for (;;) {
      const e = await r.next();
      if (!e) break;
      res.entries++;
      const at = `${what}: ${e.path}`;
      const norm = normalizeLayerPath(e.path, what);
      if (e.mtime > 0 && e.type === '0' && inObjectStore(norm)) {
        const w = await writeEntryContent(repo, r, e, at, opts.spoolDir);
        if (w.written) res.filesWritten++;
        else res.filesAlreadyPresent++;
        heldObjects.set(norm.join('/'), w.checksum);
        continue;
      }
      if (e.mtime > 0 && e.type === '1') {
        const target = normalizeLayerPath(e.linkname, what);
        if (inObjectStore(target)) {
          const key = target.join('/');
          const checksum = heldObjects.get(key) ?? takenObjects.get(key);
          const m = mapLayerPath(norm, opts.allowNonUsr);
          if (checksum === undefined) filter('sysroot'); // a link to an unmodified object: dropped, as upstream
          else if (!m.keep) filter(m.key);
          else {
            tree.set(m.parts, { kind: 'file', checksum });
            heldObjects.delete(key);
            takenObjects.set(key, checksum);
          }
          continue;
        }
      }
      const m = mapLayerPath(norm, opts.allowNonUsr);
      if (!m.keep) {
        filter(m.key);
        continue;
      }
      const parts = m.parts;
      if (e.type === '5') {
        const meta: DirMeta = { uid: e.uid, gid: e.gid, mode: S_IFDIR | (e.mode & 0o7777), xattrs: paxXattrs(e, at) };
        const d = tree.dir(parts);
        d.meta = writeDirMeta(repo, meta);
        continue;
      }
      if (parts.length === 0) throw new DerivedLayerError(`${at}: the root must be a directory (entry type '${e.type}')`);
      if (e.type === '0' || e.type === '7' || e.type === '2') {
        const size = e.type === '2' ? 0 : e.size;
        const w = await writeEntryContent(repo, r, e, at, opts.spoolDir);
        if (w.written) res.filesWritten++;
        else res.filesAlreadyPresent++;
        res.contentBytes += size;
        tree.set(parts, { kind: 'file', checksum: w.checksum });
        opts.onEntry?.(e.path, res.contentBytes);
        continue;
      }
      if (e.type === '1') {
        const t = mapLayerPath(normalizeLayerPath(e.linkname, what), opts.allowNonUsr);
        if (!t.keep) throw new DerivedLayerError(`${at}: hardlink target ${JSON.stringify(e.linkname)} is outside the imported tree`, { path: e.path });
        // Resolve in stream order: the target must be known now.
        const found = tree.root.lookup(repo, t.parts);
        if (found?.kind === 'file') tree.set(parts, { kind: 'file', checksum: found.checksum });
        else links.push({ parts, target: t.parts, at });
        continue;
      }
      throw new DerivedLayerError(`${at}: unsupported entry type '${e.type}' (device, FIFO or socket) outside /dev, /run, /tmp, /proc, /sys`, {
        path: e.path,
        type: e.type,
      });
    }
  } catch (err) {
    await r.close().catch(() => {});
    throw err;
  }
  for (const l of links) {
    const c = opts.lowerLookup?.(l.target);
    if (!c) throw new DerivedLayerError(`${l.at}: hardlink target /${l.target.join('/')} is not a regular file of this layer or the layers below`);
    tree.set(l.parts, { kind: 'file', checksum: c });
  }
  const rootTree = tree.root.writeTree(repo);
  const bytes = serializeCommit({
    metadata: [],
    parent: null,
    related: [],
    subject: '',
    body: '',
    timestamp: 0n,
    rootTree,
    rootMeta: tree.root.meta,
  });
  res.commit = writeMetadataObject(repo, ObjectType.COMMIT, bytes);
  return res;
}

/** Apply a layer commit (whiteouts interpreted) onto `lower`. */
export function applyLayerCommit(repo: Repo, lower: MDir, layerCommit: string): void {
  const c = repo.loadCommit(layerCommit).commit;
  applyDir(repo, lower, c.rootTree, c.rootMeta);
}

function applyDir(repo: Repo, lower: MDir, tree: string, meta: string): void {
  const t = repo.loadDirTree(tree);
  if (t.files.some((f) => f.name === OPAQUE)) {
    lower.clear();
    lower.meta = meta;
  }
  const kids = lower.entries(repo);
  for (const f of t.files) {
    if (f.name !== OPAQUE && f.name.startsWith(WHITEOUT)) kids.delete(f.name.slice(WHITEOUT.length));
  }
  for (const f of t.files) {
    if (f.name.startsWith(WHITEOUT)) continue;
    kids.set(f.name, { kind: 'file', checksum: f.checksum });
  }
  for (const d of t.dirs) {
    const existing = kids.get(d.name);
    let target: MDir;
    if (existing?.kind === 'dir') target = existing;
    else {
      target = new MDir(d.meta);
      kids.set(d.name, target);
    }
    applyDir(repo, target, d.tree, d.meta);
  }
}

/** Remove empty `usr/etc/hostname` and `usr/etc/resolv.conf` (as ostree-ext's merge does). */
export function removeEmptyEtcFiles(repo: Repo, root: MDir): string[] {
  const removed: string[] = [];
  const etc = root.lookup(repo, ['usr', 'etc']);
  if (etc?.kind !== 'dir') return removed;
  for (const name of ['hostname', 'resolv.conf']) {
    const e = etc.lookup(repo, [name]);
    if (e?.kind !== 'file') continue;
    const f = repo.readFileHeader(e.checksum);
    if ((f.header.mode & 0o170000) === S_IFREG && f.size === 0) {
      etc.entries(repo).delete(name);
      removed.push(`/usr/etc/${name}`);
    }
  }
  return removed;
}

/** Content of a regular file at `parts` in a commit, or null (small files only: config files). */
export async function readCommitFile(repo: Repo, commit: string, parts: readonly string[], limit = 1 << 20): Promise<Buffer | null> {
  const c = repo.loadCommit(commit).commit;
  const root = new MDir(c.rootMeta, c.rootTree);
  const e = root.lookup(repo, parts);
  if (e?.kind !== 'file') return null;
  const f = repo.readFile(e.checksum);
  if (!f.stream) return null;
  if (f.size > limit) {
    f.stream.destroy();
    return null;
  }
  const chunks: Buffer[] = [];
  for await (const ch of f.stream) chunks.push(ch as Buffer);
  return Buffer.concat(chunks);
}

/** Minimal GKeyFile reading: `[group]` and `key = value` lines. */
export function parseKeyFile(text: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let group: Map<string, string> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const g = /^\[([^\]]+)\]$/.exec(line);
    if (g) {
      group = out.get(g[1]!) ?? new Map();
      out.set(g[1]!, group);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq > 0 && group) group.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return out;
}

/**
 * ostree-ext's `overlayfs_root_enabled`: the base's prepare-root.conf (`etc/ostree/…` first, then
 * `usr/lib/ostree/…`) has `[root] transient = true` or `[composefs] enabled = yes`.
 */
export async function baseAllowsNonUsr(repo: Repo, base: string): Promise<boolean> {
  for (const p of [['etc', 'ostree', 'prepare-root.conf'], ['usr', 'lib', 'ostree', 'prepare-root.conf']]) {
    const b = await readCommitFile(repo, base, p);
    if (!b) continue;
    const kf = parseKeyFile(b.toString('utf8'));
    const transient = kf.get('root')?.get('transient');
    const composefs = kf.get('composefs')?.get('enabled');
    return transient === 'true' || transient === '1' || composefs === 'yes';
  }
  return false;
}
