/**
 * A mutable ostree tree that is lazy over a repository: a directory stays a reference to its
 * stored dirtree until something inside it changes, so applying a small layer to a big base commit
 * loads and rewrites only the directories on the changed paths. Only names and checksums live in
 * memory. Writing serializes the changed dirtrees (verifying writes; objects already present are
 * not rewritten) and reuses the stored checksum for every untouched subtree.
 */
import { ObjectType } from '../../ostree-bindings/index.js';
import { serializeDirMeta, serializeDirTree, type DirMeta } from '../gvariant/ostree-types.js';
import { sha256Hex } from '../ostree/checksum.js';
import type { Repo } from '../ostree/repo.js';

export interface MFile {
  kind: 'file';
  checksum: string;
}

export type MEntry = MFile | MDir;

const byName = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

export class MDir {
  readonly kind = 'dir' as const;
  private kids: Map<string, MEntry> | null;

  /** `stored`: the dirtree this directory still equals (null for a new or changed directory). */
  constructor(
    public meta: string,
    private stored: string | null = null,
  ) {
    this.kids = stored === null ? new Map() : null;
  }

  /** Children, loading the stored dirtree on first access. Mutating the map changes the tree. */
  entries(repo: Repo): Map<string, MEntry> {
    if (!this.kids) {
      const t = repo.loadDirTree(this.stored!);
      const m = new Map<string, MEntry>();
      for (const f of t.files) m.set(f.name, { kind: 'file', checksum: f.checksum });
      for (const d of t.dirs) m.set(d.name, new MDir(d.meta, d.tree));
      this.kids = m;
      this.stored = null;
    }
    return this.kids;
  }

  /** Drop every child (opaque directory). */
  clear(): void {
    this.kids = new Map();
    this.stored = null;
  }

  get loaded(): boolean {
    return this.kids !== null;
  }

  /** The entry at `parts` below this directory, or undefined. */
  lookup(repo: Repo, parts: readonly string[]): MEntry | undefined {
    let cur: MEntry = this;
    for (const p of parts) {
      if (cur.kind !== 'dir') return undefined;
      const next: MEntry | undefined = cur.entries(repo).get(p);
      if (!next) return undefined;
      cur = next;
    }
    return cur;
  }

  /** Write changed dirtrees; returns this directory's dirtree checksum. */
  writeTree(repo: Repo): string {
    if (!this.kids) return this.stored!;
    const files: Array<{ name: string; checksum: string }> = [];
    const dirs: Array<{ name: string; tree: string; meta: string }> = [];
    for (const name of [...this.kids.keys()].sort(byName)) {
      const e = this.kids.get(name)!;
      if (e.kind === 'file') files.push({ name, checksum: e.checksum });
      else dirs.push({ name, tree: e.writeTree(repo), meta: e.meta });
    }
    return writeMetadataObject(repo, ObjectType.DIR_TREE, serializeDirTree({ files, dirs }));
  }
}

/** Write a metadata object under the SHA-256 of its bytes unless present; returns the checksum. */
export function writeMetadataObject(repo: Repo, type: ObjectType, bytes: Buffer): string {
  const csum = sha256Hex(bytes);
  if (!repo.hasObject(type, csum)) repo.writeMetadata(type, csum, bytes);
  return csum;
}

export function writeDirMeta(repo: Repo, m: DirMeta): string {
  return writeMetadataObject(repo, ObjectType.DIR_META, serializeDirMeta(m));
}

/** root:root 0755, no xattrs: the dirmeta ostree-ext gives synthetic roots and autocreated parents. */
export const DEFAULT_DIRMETA: DirMeta = { uid: 0, gid: 0, mode: 0o40755, xattrs: [] };
