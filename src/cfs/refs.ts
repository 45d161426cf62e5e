/**
 * The symlinks of a composefs repository: `images/<hex>` and `streams/<content-id>` point at
 * objects, `images/refs/**` and `streams/refs/**` (the GC roots) point at those. Links are
 * relative and computed the way composefs-rs' `Repository::symlink` does (common leading
 * components dropped, one `..` per remaining directory of the link), e.g.
 * `images/refs/a/b → ../../<hex>`, `streams/refs/oci/t → ../../oci-manifest-sha256:…`.
 * Every link is created under a temporary name and renamed over the final name (atomic replace).
 */
import { lstat, mkdir, readdir, readlink, rename, stat, symlink, unlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { UsageError } from '../errors.js';
import { CfsRepoError } from './errors.js';
import { isDigestHex, type CfsRepo } from './repository.js';

export type Category = 'images' | 'streams';

/** Relative symlink text for a link at repo path `name` pointing at repo path `target`. */
export function relativeLinkTarget(name: string, target: string): string {
  const linkDir = posix.dirname(name).split('/').filter(Boolean);
  const t = target.split('/').filter(Boolean);
  let i = 0;
  while (i < linkDir.length && i < t.length - 1 && linkDir[i] === t[i]) i++;
  return [...Array(linkDir.length - i).fill('..'), ...t.slice(i)].join('/');
}

/** A ref name: relative, `/`-separated, no empty, `.` or `..` components, no NUL. */
export function checkRefName(name: string, what = 'ref name'): void {
  const parts = name.split('/');
  if (!name || name.includes('\0') || name.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new UsageError(`invalid ${what} "${name}": must be a relative path without empty, "." or ".." components`);
  }
}

/** Content identifiers (names directly under streams/) never contain a slash. */
export function checkContentId(id: string): void {
  if (!id || id.includes('/') || id.includes('\0') || id === '.' || id === '..' || id === 'refs') {
    throw new UsageError(`invalid stream name "${id}"`);
  }
}

/**
 * Refuse a link at repo path `name` that cannot be made because of what is already there: a
 * parent component that is not a directory (a ref of that shorter name, e.g. `images/refs/a`
 * when `a/b` is asked for), or `name` itself being a directory (refs below it). Refs are a
 * namespace like git's; a clash is an error naming both paths, not a raw ENOTDIR/EISDIR.
 */
export async function checkLinkSlot(repo: CfsRepo, name: string): Promise<void> {
  const parts = name.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const p = parts.slice(0, i).join('/');
    let st;
    try {
      st = await lstat(join(repo.path, p));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // the rest gets created
      throw e;
    }
    const last = i === parts.length;
    if (!last && !st.isDirectory()) {
      const what = st.isSymbolicLink() ? 'a ref (symlink)' : 'not a directory';
      throw new UsageError(`${repo.path}: cannot create ${name}: ${p} is ${what}; remove it or choose another name`, { path: p });
    }
    if (last && st.isDirectory()) {
      throw new UsageError(`${repo.path}: cannot create ${name}: it is a directory holding other refs (${name}/…); choose another name`, { path: name });
    }
  }
}

/** Create or atomically replace the symlink at repo path `name` pointing at repo path `target`. */
export async function replaceSymlink(repo: CfsRepo, name: string, target: string): Promise<void> {
  await checkLinkSlot(repo, name);
  const abs = join(repo.path, name);
  await mkdir(posix.dirname(abs), { recursive: true });
  const link = relativeLinkTarget(name, target);
  // Made in the temp directory (same filesystem) so a killed process never leaves an extra link
  // among the refs; the link text is relative to the final place, which rename does not change.
  await mkdir(repo.tmpDir, { recursive: true });
  const tmp = join(repo.tmpDir, `${process.pid}.${Math.random().toString(36).slice(2, 10)}.link.tmp`);
  await symlink(link, tmp);
  try {
    await rename(tmp, abs);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/** `images/<hex>` → the image object. */
export async function linkImage(repo: CfsRepo, hex: string): Promise<void> {
  await replaceSymlink(repo, `images/${hex}`, repo.objectRel(hex));
}

/** `images/refs/<name>` → `images/<hex>`. */
export async function setImageRef(repo: CfsRepo, name: string, hex: string): Promise<void> {
  checkRefName(name, 'image ref name');
  await replaceSymlink(repo, `images/refs/${name}`, `images/${hex}`);
}

/** `streams/<contentId>` → the splitstream object. */
export async function linkStream(repo: CfsRepo, contentId: string, hex: string): Promise<void> {
  checkContentId(contentId);
  await replaceSymlink(repo, `streams/${contentId}`, repo.objectRel(hex));
}

/** `streams/refs/<name>` → `streams/<contentId>`. */
export async function setStreamRef(repo: CfsRepo, name: string, contentId: string): Promise<void> {
  checkRefName(name, 'stream ref name');
  checkContentId(contentId);
  await replaceSymlink(repo, `streams/refs/${name}`, `streams/${contentId}`);
}

/** Object digest a top-level `images/` or `streams/` link points at (null if it is not such a link). */
export async function entryObject(repo: CfsRepo, category: Category, entry: string): Promise<string | null> {
  let target: string;
  try {
    target = await readlink(join(repo.path, category, entry));
  } catch {
    return null;
  }
  const m = /(?:^|\/)objects\/([0-9a-f]{2})\/([0-9a-f]{62})$/.exec(target);
  if (!m || !target.startsWith('../')) return null;
  const hex = m[1]! + m[2]!;
  return isDigestHex(hex) ? hex : null;
}

/** The object digest a stream's content id points at, or null when there is no such stream. */
export async function streamObject(repo: CfsRepo, contentId: string): Promise<string | null> {
  return entryObject(repo, 'streams', contentId);
}

export interface RefEntry {
  /** Name below `<category>/refs/`. */
  name: string;
  /** Symlink text. */
  link: string;
  /** Entry under `<category>/` it points at (last path component), or null for an odd link. */
  entry: string | null;
}

/** Every ref symlink under `<category>/refs/` (recursive); other file types are reported in `odd`. */
export async function listRefs(repo: CfsRepo, category: Category): Promise<{ refs: RefEntry[]; odd: string[] }> {
  const refs: RefEntry[] = [];
  const odd: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const dir = join(repo.path, category, 'refs', rel);
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && rel === '') return;
      throw e;
    }
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const st = await lstat(join(dir, n));
      if (st.isDirectory()) await walk(r);
      else if (st.isSymbolicLink()) {
        const link = await readlink(join(dir, n));
        const last = link.split('/').filter(Boolean).pop() ?? null;
        refs.push({ name: r, link, entry: last === '..' || last === '.' ? null : last });
      } else odd.push(`${category}/refs/${r}`);
    }
  };
  await walk('');
  return { refs, odd };
}

/** Top-level entries of `images/` or `streams/` (excluding `refs`). */
export async function listEntries(repo: CfsRepo, category: Category): Promise<string[]> {
  try {
    return (await readdir(join(repo.path, category))).filter((n) => n !== 'refs').sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/** Does the link at repo path `rel` resolve (following all symlinks) to an existing file? */
export async function resolves(repo: CfsRepo, rel: string): Promise<boolean> {
  return stat(join(repo.path, rel)).then(
    (s) => s.isFile(),
    () => false,
  );
}

// OCI tags, as composefs-oci stores them: `streams/refs/oci/<tag with % → %25, / → %2F>`.

export const OCI_REF_PREFIX = 'oci/';

export function encodeTag(tag: string): string {
  return tag.replace(/%/g, '%25').replace(/\//g, '%2F');
}

export function decodeTag(encoded: string): string {
  return encoded.replace(/%(25|2F)/g, (_m, c: string) => (c === '25' ? '%' : '/'));
}

/** composefs-oci refuses tags containing `@` (reserved for digests). */
export function checkTag(tag: string): void {
  if (!tag || tag.includes('@') || tag.includes('\0')) throw new UsageError(`invalid OCI tag "${tag}" (must be non-empty, without "@")`);
}

export const manifestContentId = (digest: string): string => `oci-manifest-${digest}`;
export const configContentId = (digest: string): string => `oci-config-${digest}`;
export const layerContentId = (diffId: string): string => `oci-layer-${diffId}`;

/** Point tag `tag` at the manifest stream of `manifestDigest`. */
export async function setOciTag(repo: CfsRepo, tag: string, manifestDigest: string): Promise<void> {
  checkTag(tag);
  await setStreamRef(repo, `${OCI_REF_PREFIX}${encodeTag(tag)}`, manifestContentId(manifestDigest));
}

/** Resolve a tag the way composefs-oci's `resolve_ref` does: the link's last component names the manifest. */
export async function resolveOciTag(repo: CfsRepo, tag: string): Promise<{ manifestDigest: string; streamHex: string }> {
  const rel = `streams/refs/${OCI_REF_PREFIX}${encodeTag(tag)}`;
  let target: string;
  try {
    target = await readlink(join(repo.path, rel));
  } catch {
    throw new CfsRepoError(`${repo.path}: no OCI image tagged "${tag}" (${rel})`);
  }
  const last = target.split('/').pop() ?? '';
  if (!last.startsWith('oci-manifest-')) throw new CfsRepoError(`${rel}: points at ${target}, not a manifest stream`);
  const manifestDigest = last.slice('oci-manifest-'.length);
  const streamHex = await streamObject(repo, last);
  if (!streamHex) throw new CfsRepoError(`${rel}: manifest stream streams/${last} is missing`);
  return { manifestDigest, streamHex };
}
