/**
 * Check a composefs repository (what `cfsctl fsck` checks, plus content verification):
 *
 *  - `meta.json` parses and names fsverity-sha256-12 (done by `CfsRepo.open`);
 *  - every object's fs-verity digest equals its name (`objects/hh/<rest>`); any other file there
 *    is reported;
 *  - every `images/<hex>` is a link to an existing object named `<hex>`, the image parses, and
 *    every external file's metacopy digest names an existing object and agrees with its redirect;
 *  - every `streams/<id>` is a link to an existing object, the splitstream parses, and every
 *    object and named stream it references exists;
 *  - every ref under `images/refs/` and `streams/refs/` resolves.
 *
 * Temporary files of running or killed writers (`.ostree-oci-tmp/`) are not objects; they are
 * counted, and `gc` removes those of processes that are gone.
 */
import { lstat, readdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fsverityDigestFile } from '../composefs/fsverity.js';
import { imageExternalFiles, payloadOf } from './images.js';
import { entryObject, listEntries, listRefs, type Category } from './refs.js';
import type { CfsRepo } from './repository.js';
import { contentTypeName, readSplitstream } from './splitstream.js';

export type FsckErrorKind =
  | 'corrupt-object'
  | 'unexpected-file'
  | 'entry-not-symlink'
  | 'broken-link'
  | 'entry-name-mismatch'
  | 'invalid-image'
  | 'invalid-stream'
  | 'missing-object'
  | 'redirect-mismatch'
  | 'broken-ref'
  | 'unexpected-ref';

export interface FsckError {
  kind: FsckErrorKind;
  path: string;
  detail: string;
}

export interface FsckReport {
  repo: string;
  ok: boolean;
  objects: { checked: number; corrupted: number; bytes: number };
  images: { checked: number; corrupted: number; externalFiles: number };
  streams: { checked: number; corrupted: number };
  refs: { checked: number; broken: number };
  missingObjects: number;
  /** Temporary files under `.ostree-oci-tmp/` (from running or killed writers). */
  tempFiles: number;
  errors: FsckError[];
}

export interface FsckOptions {
  /** Skip re-hashing objects (structure and references only). */
  skipObjectDigests?: boolean;
  onProgress?: (phase: string, done: number, total: number) => void;
}

export async function fsckRepo(repo: CfsRepo, opts: FsckOptions = {}): Promise<FsckReport> {
  const r: FsckReport = {
    repo: repo.path,
    ok: false,
    objects: { checked: 0, corrupted: 0, bytes: 0 },
    images: { checked: 0, corrupted: 0, externalFiles: 0 },
    streams: { checked: 0, corrupted: 0 },
    refs: { checked: 0, broken: 0 },
    missingObjects: 0,
    tempFiles: (await repo.tempFiles()).length,
    errors: [],
  };
  const err = (kind: FsckErrorKind, path: string, detail: string): void => {
    r.errors.push({ kind, path, detail });
  };

  // Objects.
  const objectsDir = join(repo.path, 'objects');
  const files: Array<{ rel: string; hex: string }> = [];
  for (const d of (await readdir(objectsDir).catch(() => [] as string[])).sort()) {
    const st = await lstat(join(objectsDir, d));
    if (!/^[0-9a-f]{2}$/.test(d) || !st.isDirectory()) {
      err('unexpected-file', `objects/${d}`, 'not an object directory (00..ff)');
      continue;
    }
    for (const f of (await readdir(join(objectsDir, d))).sort()) {
      const rel = `objects/${d}/${f}`;
      const fst = await lstat(join(objectsDir, d, f));
      if (!/^[0-9a-f]{62}$/.test(f) || !fst.isFile()) {
        err('unexpected-file', rel, fst.isFile() ? 'file name is not a 62-digit hex digest remainder' : 'not a regular file');
        continue;
      }
      files.push({ rel, hex: d + f });
      r.objects.bytes += fst.size;
    }
  }
  let done = 0;
  const lane = async (): Promise<void> => {
    while (done < files.length) {
      const f = files[done++]!;
      r.objects.checked++;
      if (!opts.skipObjectDigests) {
        try {
          const got = (await fsverityDigestFile(join(repo.path, f.rel))).toString('hex');
          if (got !== f.hex) {
            r.objects.corrupted++;
            err('corrupt-object', f.rel, `fs-verity digest is ${got}, the name says ${f.hex}`);
          }
        } catch (e) {
          r.objects.corrupted++;
          err('corrupt-object', f.rel, `cannot read: ${(e as Error).message}`);
        }
      }
      opts.onProgress?.('objects', r.objects.checked, files.length);
    }
  };
  await Promise.all([lane(), lane(), lane()]);

  const exists = async (hex: string): Promise<boolean> => repo.hasObject(hex);

  // Top-level images/ and streams/ entries.
  const checkEntry = async (category: Category, name: string): Promise<string | null> => {
    const rel = `${category}/${name}`;
    const st = await lstat(join(repo.path, rel));
    if (!st.isSymbolicLink()) {
      err('entry-not-symlink', rel, 'expected a symlink into objects/');
      return null;
    }
    const hex = await entryObject(repo, category, name);
    if (!hex) {
      err('broken-link', rel, 'does not point at ../objects/hh/<rest>');
      return null;
    }
    if (!(await exists(hex))) {
      r.missingObjects++;
      err('broken-link', rel, `points at missing object ${repo.objectRel(hex)}`);
      return null;
    }
    return hex;
  };

  for (const name of await listEntries(repo, 'images')) {
    r.images.checked++;
    const hex = await checkEntry('images', name);
    if (!hex) {
      r.images.corrupted++;
      continue;
    }
    if (name !== hex) {
      r.images.corrupted++;
      err('entry-name-mismatch', `images/${name}`, `points at object ${hex}, but an image is named by its digest`);
    }
    let ext;
    try {
      ext = await imageExternalFiles(repo.objectPath(hex));
    } catch (e) {
      r.images.corrupted++;
      err('invalid-image', `images/${name}`, (e as Error).message);
      continue;
    }
    r.images.externalFiles += ext.length;
    const seen = new Set<string>();
    for (const f of ext) {
      if (f.hex && f.payload !== null && f.payload !== payloadOf(f.hex)) {
        err('redirect-mismatch', `images/${name}:${f.path}`, `redirect ${f.payload} does not name its metacopy digest ${f.hex}`);
      }
      const want = f.hex ?? (f.payload && /^[0-9a-f]{2}\/[0-9a-f]{62}$/.test(f.payload) ? f.payload.replace('/', '') : null);
      if (!want) {
        if (f.payload !== null) {
          const ok = await stat(join(repo.path, 'objects', f.payload)).then((s) => s.isFile(), () => false);
          if (!ok) {
            r.missingObjects++;
            err('missing-object', `images/${name}:${f.path}`, `backing file objects/${f.payload} does not exist`);
          }
        }
        continue;
      }
      if (seen.has(want)) continue;
      seen.add(want);
      if (!(await exists(want))) {
        r.missingObjects++;
        err('missing-object', `images/${name}:${f.path}`, `object ${repo.objectRel(want)} does not exist`);
      }
    }
  }

  for (const name of await listEntries(repo, 'streams')) {
    r.streams.checked++;
    const hex = await checkEntry('streams', name);
    if (!hex) {
      r.streams.corrupted++;
      continue;
    }
    let info;
    try {
      info = await readSplitstream(repo.objectPath(hex));
    } catch (e) {
      r.streams.corrupted++;
      err('invalid-stream', `streams/${name}`, (e as Error).message);
      continue;
    }
    for (const o of new Set(info.objectRefs)) {
      if (!(await exists(o))) {
        r.missingObjects++;
        err('missing-object', `streams/${name}`, `references missing object ${repo.objectRel(o)} (${contentTypeName(info.contentType)} stream)`);
      }
    }
    for (const [refName, o] of info.namedRefs) {
      if (!(await exists(o))) {
        r.missingObjects++;
        err('missing-object', `streams/${name}`, `named ref "${refName}" points at missing object ${repo.objectRel(o)}`);
      }
    }
  }

  // Refs.
  for (const category of ['images', 'streams'] as const) {
    const { refs, odd } = await listRefs(repo, category);
    for (const o of odd) err('unexpected-ref', o, 'not a symlink or directory');
    for (const ref of refs) {
      r.refs.checked++;
      const rel = `${category}/refs/${ref.name}`;
      // A ref must name an entry of its own category (what gc keeps: the link's last component),
      // not merely any file: `→ /etc/passwd` or `→ ../../../objects/…` are broken.
      const target = resolve(dirname(join(repo.path, rel)), ref.link);
      if (ref.entry === null || target !== resolve(repo.path, category, ref.entry)) {
        r.refs.broken++;
        err('broken-ref', rel, `→ ${ref.link} does not point at an entry of ${category}/`);
        continue;
      }
      const ok = await stat(target).then((s) => s.isFile(), () => false);
      if (!ok) {
        r.refs.broken++;
        err('broken-ref', rel, `→ ${ref.link} does not resolve to an object`);
      }
    }
  }

  r.ok = r.errors.length === 0;
  return r;
}

export function formatFsckReport(r: FsckReport): string {
  const lines = [
    `composefs repository ${r.repo}`,
    `  objects: ${r.objects.checked} checked, ${r.objects.corrupted} corrupted (${r.objects.bytes} bytes)`,
    `  images:  ${r.images.checked} checked, ${r.images.corrupted} corrupted, ${r.images.externalFiles} external files`,
    `  streams: ${r.streams.checked} checked, ${r.streams.corrupted} corrupted`,
    `  refs:    ${r.refs.checked} checked, ${r.refs.broken} broken`,
    `  missing objects: ${r.missingObjects}`,
  ];
  if (r.tempFiles) lines.push(`  temporary files: ${r.tempFiles} (removed by gc once their writer is gone)`);
  for (const e of r.errors) lines.push(`  ERROR ${e.kind}: ${e.path}: ${e.detail}`);
  lines.push(r.ok ? 'result: ok' : `result: ${r.errors.length} error(s)`);
  return `${lines.join('\n')}\n`;
}
