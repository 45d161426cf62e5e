/**
 * Garbage collection, with composefs-rs' reachability rules (`Repository::gc`):
 *
 *  - roots: every ref under `images/refs/` (→ an image: the image object and every object its
 *    metacopy xattrs name are live) and under `streams/refs/` (→ a stream);
 *  - a live stream keeps its own object, its `object_refs`, and every object its named refs point
 *    at; a named ref whose object is a stream (found through `streams/<id>` links) is walked in
 *    turn, one that is an image (an `images/<hex>` link) keeps that image's objects too;
 *  - every other object under `objects/` is removed, then every `images/`/`streams/` entry and
 *    ref whose target is gone, then temporary files of writers that no longer run.
 *
 * Runs under the repository's gc lock: refused while a writer (migration) is running.
 */
import { lstat, readdir, rmdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CfsRepoError } from './errors.js';
import { imageObjects } from './images.js';
import { entryObject, listEntries, listRefs } from './refs.js';
import type { CfsRepo } from './repository.js';
import { readSplitstream } from './splitstream.js';

export interface GcResult {
  dryRun: boolean;
  live: number;
  objectsRemoved: number;
  bytesRemoved: number;
  imagesRemoved: number;
  streamsRemoved: number;
  refsRemoved: number;
  tempFilesRemoved: number;
  /** Removed (or, with dryRun, removable) object paths. */
  removed: string[];
  /** Removed (or removable) `images/`, `streams/` links and refs, as repository paths. */
  removedLinks: string[];
}

export async function gcRepo(repo: CfsRepo, opts: { dryRun?: boolean } = {}): Promise<GcResult> {
  const dryRun = Boolean(opts.dryRun);
  const release = dryRun ? async () => {} : await repo.lockGc();
  try {
    const live = new Set<string>();
    const imageEntries = new Map<string, string>(); // object hex → images/<name>
    for (const name of await listEntries(repo, 'images')) {
      const hex = await entryObject(repo, 'images', name);
      if (hex) imageEntries.set(hex, name);
    }
    const streamByObject = new Map<string, string>(); // object hex → streams/<id>
    for (const name of await listEntries(repo, 'streams')) {
      const hex = await entryObject(repo, 'streams', name);
      if (hex) streamByObject.set(hex, name);
    }

    const imagesDone = new Set<string>();
    const markImage = async (hex: string): Promise<void> => {
      live.add(hex);
      if (imagesDone.has(hex)) return;
      imagesDone.add(hex);
      if (!(await repo.hasObject(hex))) return;
      let objs: Set<string>;
      try {
        objs = await imageObjects(repo.objectPath(hex));
      } catch (e) {
        // Never delete what an unreadable image might reference: stop instead.
        throw new CfsRepoError(`gc: cannot read image ${repo.objectRel(hex)}: ${(e as Error).message} (run cfs fsck)`);
      }
      for (const o of objs) live.add(o);
    };

    const streamsDone = new Set<string>();
    const markStream = async (hex: string): Promise<void> => {
      live.add(hex);
      if (streamsDone.has(hex)) return;
      streamsDone.add(hex);
      if (!(await repo.hasObject(hex))) return;
      let info;
      try {
        info = await readSplitstream(repo.objectPath(hex));
      } catch (e) {
        throw new CfsRepoError(`gc: cannot read splitstream ${repo.objectRel(hex)}: ${(e as Error).message} (run cfs fsck)`);
      }
      for (const o of info.objectRefs) live.add(o);
      for (const o of info.namedRefs.values()) {
        live.add(o);
        if (streamByObject.has(o)) await markStream(o);
        if (imageEntries.has(o)) await markImage(o);
      }
    };

    for (const ref of (await listRefs(repo, 'images')).refs) {
      if (!ref.entry) continue;
      const hex = await entryObject(repo, 'images', ref.entry);
      if (hex) await markImage(hex);
    }
    for (const ref of (await listRefs(repo, 'streams')).refs) {
      if (!ref.entry) continue;
      const hex = await entryObject(repo, 'streams', ref.entry);
      if (hex) await markStream(hex);
    }

    const result: GcResult = {
      dryRun,
      live: live.size,
      objectsRemoved: 0,
      bytesRemoved: 0,
      imagesRemoved: 0,
      streamsRemoved: 0,
      refsRemoved: 0,
      tempFilesRemoved: 0,
      removed: [],
      removedLinks: [],
    };
    const gone = new Set<string>();
    const objectsDir = join(repo.path, 'objects');
    for (const d of (await readdir(objectsDir).catch(() => [] as string[])).sort()) {
      if (!/^[0-9a-f]{2}$/.test(d)) continue;
      const names = await readdir(join(objectsDir, d));
      for (const f of names.sort()) {
        if (!/^[0-9a-f]{62}$/.test(f)) continue;
        const hex = d + f;
        if (live.has(hex)) continue;
        const p = join(objectsDir, d, f);
        const st = await lstat(p).catch(() => null);
        if (!st?.isFile()) continue;
        result.objectsRemoved++;
        result.bytesRemoved += st.size;
        result.removed.push(`objects/${d}/${f}`);
        gone.add(hex);
        if (!dryRun) await unlink(p);
      }
      if (!dryRun && names.length > 0 && (await readdir(join(objectsDir, d))).length === 0) await rmdir(join(objectsDir, d)).catch(() => {});
    }

    // Links whose target is (or will be) gone.
    const dangling = async (rel: string, hex: string | null): Promise<boolean> => {
      if (hex && gone.has(hex)) return true;
      return stat(join(repo.path, rel)).then(
        () => false,
        () => true,
      );
    };
    for (const [category, counter] of [
      ['images', 'imagesRemoved'],
      ['streams', 'streamsRemoved'],
    ] as const) {
      const removedEntries = new Set<string>();
      for (const name of await listEntries(repo, category)) {
        const rel = `${category}/${name}`;
        const st = await lstat(join(repo.path, rel));
        if (!st.isSymbolicLink()) continue;
        if (await dangling(rel, await entryObject(repo, category, name))) {
          result[counter]++;
          result.removedLinks.push(rel);
          removedEntries.add(name);
          if (!dryRun) await unlink(join(repo.path, rel));
        }
      }
      for (const ref of (await listRefs(repo, category)).refs) {
        const rel = `${category}/refs/${ref.name}`;
        if ((ref.entry && removedEntries.has(ref.entry)) || (await dangling(rel, null))) {
          result.refsRemoved++;
          result.removedLinks.push(rel);
          if (!dryRun) await unlink(join(repo.path, rel));
        }
      }
    }
    result.tempFilesRemoved = await repo.cleanStaleTemps(dryRun);
    return result;
  } finally {
    await release();
  }
}
