/**
 * Paths of the ostree-ext tar format (shared/specs/ostree-container-format.md §1.3, §2.1):
 * object paths under `sysroot/ostree/repo/objects`, the `/usr/etc` ↔ `/etc` mapping, and the
 * validation and parsing the importer applies to every entry name.
 */
import { ContainerFormatError } from './errors.js';

export const OSTREEDIR = 'sysroot/ostree';
/** Entries under this prefix are the ones the importer looks at. */
export const REPO_PREFIX = 'sysroot/ostree/repo/';
/**
 * Whether a checkout entry (tar path, no leading `./`) falls on the repository skeleton every layer
 * carries: at or below `sysroot/ostree/repo` importers take it for part of the image's repository
 * (an object below `objects/` or `xattrs/`, dropped as `config` or `refs/…`, otherwise a stray
 * file in the repository a container sees), and at `sysroot` or `sysroot/ostree` it would
 * replace one of the skeleton's directories.
 */
export function collidesWithRepoSkeleton(tarPath: string): boolean {
  return tarPath === 'sysroot' || tarPath === OSTREEDIR || tarPath === `${OSTREEDIR}/repo` || tarPath.startsWith(REPO_PREFIX);
}

export const REPO_CONFIG = '[core]\nrepo_version=1\nmode=bare-split-xattrs\n';

export type ObjectKind = 'commit' | 'commitmeta' | 'dirtree' | 'dirmeta' | 'file';

export function objectPath(kind: ObjectKind, checksum: string): string {
  return `${OSTREEDIR}/repo/objects/${checksum.slice(0, 2)}/${checksum.slice(2)}.${kind}`;
}

export function xattrsLinkPath(checksum: string): string {
  return `${OSTREEDIR}/repo/objects/${checksum.slice(0, 2)}/${checksum.slice(2)}.file-xattrs-link`;
}

function mapPrefix(p: string, from: string, to: string): string {
  if (p === from) return to;
  if (p.startsWith(`${from}/`)) return to + p.slice(from.length);
  return p;
}

/** Full-export paths (`./usr/etc/…` → `./etc/…`), component-wise. */
export const mapPathV0 = (p: string): string => mapPrefix(p, './usr/etc', './etc');

/** Chunk paths (`usr/etc/…` → `etc/…`), component-wise; `usr/etcx` is untouched. */
export const mapPathV1 = (p: string): string => mapPrefix(p, 'usr/etc', 'etc');

/** `etc/…` → `usr/etc/…` (inverse of mapPathV1). */
export const unmapPath = (p: string): string => mapPrefix(p, 'etc', 'usr/etc');

/** Chunk paths come from the commit walk as `/usr/bin/bash`; the tar gets `usr/bin/bash`. */
export function pathForTarV1(abs: string): string {
  return mapPathV1(abs.startsWith('/') ? abs.slice(1) : abs);
}

/** `var/tmp`, `./var/tmp` and `/var/tmp` name the same tar entry. */
export function pathEquivalentForTar(a: string, b: string): boolean {
  const strip = (p: string): string => (p.startsWith('/') ? p.slice(1) : p.startsWith('./') ? p.slice(2) : p);
  return strip(a) === strip(b);
}

/**
 * Normalize and validate an entry name (or hardlink target) from an untrusted tar stream:
 * leading `./` and `/./` segments and repeated or trailing slashes are dropped; absolute paths,
 * `..` components and NUL bytes are rejected. `''` is the root. `what` names the layer.
 */
const PLAIN_PATH = /^(?:\.\/)?(?!\.\.?(?:\/|$))[^/\0]+(?:\/(?!\.\.?(?:\/|$))[^/\0]+)*$/;

export function normalizeEntryPath(raw: string, what: string, role = 'path'): string {
  // Fast path: relative, no empty, `.` or `..` components (an optional leading `./` is dropped).
  if (PLAIN_PATH.test(raw)) return raw.startsWith('./') ? raw.slice(2) : raw;
  if (raw.includes('\0')) throw new ContainerFormatError(`${what}: ${role} ${JSON.stringify(raw)} contains a NUL byte`, { path: raw });
  if (raw.startsWith('/')) {
    throw new ContainerFormatError(`${what}: absolute ${role} ${JSON.stringify(raw)} is not allowed (path traversal)`, { path: raw });
  }
  const out: string[] = [];
  for (const c of raw.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      throw new ContainerFormatError(`${what}: ${role} ${JSON.stringify(raw)} contains ".." (path traversal)`, { path: raw });
    }
    out.push(c);
  }
  return out.join('/');
}

export type ParsedRepoPath =
  | { kind: 'object'; type: ObjectKind | 'file-xattrs' | 'file-xattrs-link' | 'file.xattrs'; checksum: string }
  | { kind: 'v0-xattrs'; checksum: string }
  | { kind: 'config' }
  | { kind: 'refs' }
  | { kind: 'other' };

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Classify a normalized path below `sysroot/ostree/repo/` (`rel` excludes the prefix). Object
 * names are `objects/XX/<62 hex>.<ext>` (and `…/<62>.file.xattrs` for v0 streams); anything that
 * looks like an object but has a malformed name is an error naming the path.
 */
export function parseRepoPath(rel: string, what: string): ParsedRepoPath {
  if (rel === 'config') return { kind: 'config' };
  if (rel === 'refs' || rel.startsWith('refs/')) return { kind: 'refs' };
  const parts = rel.split('/');
  if (parts[0] === 'xattrs' && parts.length === 2) {
    const checksum = parts[1]!;
    if (!HEX64.test(checksum)) throw new ContainerFormatError(`${what}: invalid xattrs object name ${REPO_PREFIX}${rel}`, { path: rel });
    return { kind: 'v0-xattrs', checksum };
  }
  if (parts[0] !== 'objects') return { kind: 'other' };
  const full = `${REPO_PREFIX}${rel}`;
  if (parts.length !== 3) throw new ContainerFormatError(`${what}: invalid object path ${full}`, { path: full });
  const [, dir, name] = parts as [string, string, string];
  const dot = name.indexOf('.');
  if (dot < 0) throw new ContainerFormatError(`${what}: object path ${full} has no type suffix`, { path: full });
  const stem = name.slice(0, dot);
  const ext = name.slice(dot + 1);
  const checksum = dir + stem;
  if (dir.length !== 2 || stem.length !== 62 || !HEX64.test(checksum)) {
    throw new ContainerFormatError(`${what}: object path ${full} does not name a lowercase hex SHA-256 checksum`, { path: full });
  }
  switch (ext) {
    case 'commit':
    case 'commitmeta':
    case 'dirtree':
    case 'dirmeta':
    case 'file':
    case 'file-xattrs':
    case 'file-xattrs-link':
    case 'file.xattrs':
      return { kind: 'object', type: ext, checksum };
    default:
      throw new ContainerFormatError(`${what}: unknown object type ".${ext}" in ${full}`, { path: full });
  }
}
