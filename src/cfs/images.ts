/**
 * EROFS (composefs) images in a composefs repository: stored as objects, listed as
 * `images/<hex>`, named by `images/refs/<name>`. Also: the objects an image references (what
 * composefs-rs' `collect_objects` finds: the digests in `trusted.overlay.metacopy`).
 */
import type { ErofsImage } from '../composefs/erofs/writer.js';
import { readErofsImage } from '../composefs/erofs/reader.js';
import { walk, isReg } from '../tree/model.js';
import type { ObjectStore, StoreResult } from './objects.js';
import { linkImage, setImageRef } from './refs.js';
import type { CfsRepo } from './repository.js';

/** Store the image bytes as an object (streamed from the writer); does not link it yet. */
export async function storeImage(store: ObjectStore, image: ErofsImage): Promise<StoreResult> {
  return store.storeStream(image.chunks());
}

/**
 * Publish a stored image: after a filesystem sync (everything it references is on disk), link
 * `images/<hex>` and, with `name`, `images/refs/<name>`.
 */
export async function publishImage(repo: CfsRepo, hex: string, name?: string): Promise<void> {
  await repo.sync();
  await linkImage(repo, hex);
  if (name !== undefined) await setImageRef(repo, name, hex);
}

export interface ImageObjectRef {
  /** Path in the image (first one seen for this object). */
  path: string;
  /** Object digest from the metacopy xattr (null when the file has a redirect but no digest). */
  hex: string | null;
  /** Redirect (backing path relative to the object store). */
  payload: string | null;
}

/** Every external file of an image: its path, metacopy digest and redirect. */
export async function imageExternalFiles(imagePath: string): Promise<ImageObjectRef[]> {
  const root = await readErofsImage(imagePath);
  const out: ImageObjectRef[] = [];
  for (const n of walk(root)) {
    if (n.linkTo || !isReg(n.mode)) continue;
    if (!n.digest && !n.payload) continue;
    out.push({
      path: n.pathString(),
      hex: n.digest ? n.digest.toString('hex') : null,
      payload: n.payload ? n.payload.toString('utf8') : null,
    });
  }
  return out;
}

/** The set of object digests an image references. */
export async function imageObjects(imagePath: string): Promise<Set<string>> {
  const s = new Set<string>();
  for (const f of await imageExternalFiles(imagePath)) if (f.hex) s.add(f.hex);
  return s;
}

/** `hh/rest` for a digest: the redirect composefs-oci images carry. */
export const payloadOf = (hex: string): string => `${hex.slice(0, 2)}/${hex.slice(2)}`;
