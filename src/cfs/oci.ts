/**
 * Store an OCI image in a composefs repository the way composefs-oci does (composefs-rs
 * `doc/repository.md` "OCI image storage", `composefs-oci` skopeo.rs / oci_image.rs):
 *
 *  - each layer → splitstream `streams/oci-layer-<diff_id>` (content type `ocilayer`): the
 *    uncompressed tar with regular-file content > 64 bytes as objects (see tar-split.ts);
 *  - the config → `streams/oci-config-<digest>` (`ociconfg`): the config JSON as one external
 *    object, named refs `<diff_id>` → layer stream;
 *  - the manifest → `streams/oci-manifest-<digest>` (`ocimanif`): the manifest JSON as one
 *    external object, named refs `config:<config digest>` → config stream and `<diff_id>` → layer
 *    stream;
 *  - the tag → `streams/refs/oci/<tag, % and / percent-encoded>` → `../../oci-manifest-<digest>`.
 *
 * A stream that exists already is reused after verifying its object. Everything is stored first,
 * then the filesystem is synced, then the `streams/` links and finally the tag are published, so a
 * name never points at something that is not completely there.
 */
import { createHash } from 'node:crypto';
import { openImage, type OpenImageOptions } from '../oci/index.js';
import { CfsDigestMismatchError } from './errors.js';
import type { ObjectStore } from './objects.js';
import {
  OCI_REF_PREFIX,
  configContentId,
  encodeTag,
  layerContentId,
  linkStream,
  manifestContentId,
  setOciTag,
  streamObject,
} from './refs.js';
import { CONTENT_TYPE, SplitstreamWriter, type SplitstreamResult } from './splitstream.js';
import { splitTar, type TarSplitStats } from './tar-split.js';

export interface OciStoreLayer {
  diffId: string;
  contentId: string;
  /** fs-verity digest of the layer splitstream. */
  stream: string;
  reused: boolean;
  stats?: TarSplitStats;
}

export interface OciStoreResult {
  tag: string;
  ref: string;
  manifestDigest: string;
  configDigest: string;
  manifestStream: string;
  configStream: string;
  layers: OciStoreLayer[];
}

async function existingStream(store: ObjectStore, contentId: string): Promise<string | null> {
  const hex = await streamObject(store.repo, contentId);
  if (!hex || !(await store.repo.hasObject(hex))) return null;
  await store.verifyExisting(hex);
  return hex;
}

async function finish(w: SplitstreamWriter): Promise<SplitstreamResult> {
  try {
    return await w.done();
  } catch (e) {
    await w.abort();
    throw e;
  }
}

/**
 * Store image `imgref` (any reference openImage reads) under `tag`. With `deferPublish` the
 * streams are written but no name points to them until the returned `publish` is called (so a
 * caller can publish several things last).
 */
export async function storeOciImage(
  store: ObjectStore,
  imgref: string,
  tag: string,
  opts: OpenImageOptions & { onLayer?: (i: number, n: number) => void; deferPublish?: boolean } = {},
): Promise<OciStoreResult & { publish?: () => Promise<void> }> {
  const img = await openImage(imgref, opts);
  try {
    const layers: OciStoreLayer[] = [];
    const links: Array<[string, string]> = [];
    for (let i = 0; i < img.layers.length; i++) {
      opts.onLayer?.(i, img.layers.length);
      const diffId = img.diffIds[i]!;
      const contentId = layerContentId(diffId);
      const have = await existingStream(store, contentId);
      if (have) {
        layers.push({ diffId, contentId, stream: have, reused: true });
        continue;
      }
      const w = await SplitstreamWriter.create(store, CONTENT_TYPE.OCI_LAYER);
      let stats: TarSplitStats;
      try {
        // openLayer verifies the blob digest and the diff_id by the end of the stream.
        stats = await splitTar(img.openLayer(i), w);
      } catch (e) {
        await w.abort();
        throw e;
      }
      const r = await finish(w);
      layers.push({ diffId, contentId, stream: r.hex, reused: false, stats });
      links.push([contentId, r.hex]);
    }

    const configId = configContentId(img.configDigest);
    const cw = await SplitstreamWriter.create(store, CONTENT_TYPE.OCI_CONFIG);
    for (const l of layers) cw.addNamedStreamRef(l.diffId, l.stream);
    const configSha = `sha256:${createHash('sha256').update(img.configBytes).digest('hex')}`;
    if (configSha !== img.configDigest) throw new CfsDigestMismatchError(`config of ${imgref}: sha256 ${configSha}, descriptor says ${img.configDigest}`);
    await cw.writeExternalBuffer(img.configBytes).catch(async (e) => {
      await cw.abort();
      throw e;
    });
    const config = await finish(cw);
    links.push([configId, config.hex]);

    const manifestId = manifestContentId(img.manifestDigest);
    const mw = await SplitstreamWriter.create(store, CONTENT_TYPE.OCI_MANIFEST);
    mw.addNamedStreamRef(`config:${img.configDigest}`, config.hex);
    for (const l of layers) mw.addNamedStreamRef(l.diffId, l.stream);
    await mw.writeExternalBuffer(img.manifestBytes).catch(async (e) => {
      await mw.abort();
      throw e;
    });
    const manifest = await finish(mw);
    links.push([manifestId, manifest.hex]);

    const manifestDigest = img.manifestDigest;
    const publish = async (): Promise<void> => {
      await store.repo.sync();
      for (const [id, hex] of links) await linkStream(store.repo, id, hex);
      await setOciTag(store.repo, tag, manifestDigest);
    };
    if (!opts.deferPublish) await publish();
    return {
      ...(opts.deferPublish ? { publish } : {}),
      tag,
      ref: `streams/refs/${OCI_REF_PREFIX}${encodeTag(tag)}`,
      manifestDigest: img.manifestDigest,
      configDigest: img.configDigest,
      manifestStream: manifest.hex,
      configStream: config.hex,
      layers,
    };
  } finally {
    await img.close();
  }
}
