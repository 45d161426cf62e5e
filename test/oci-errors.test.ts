import { open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { UsageError } from '../src/errors.js';
import {
  BlobNotFoundError,
  createImageWriter,
  DiffIdCheck,
  DiffIdMismatchError,
  ImageNotFoundError,
  LayerDecompressError,
  MediaType,
  OciDigestError,
  OciFormatError,
  OciLayoutWriter,
  OciSizeError,
  openImage,
  parseImageReference,
  UnsupportedMediaTypeError,
  VerifyStream,
  type ImageManifest,
  type LayerOptions,
} from '../src/oci/index.js';
import { collect, makeTar, pseudoRandom, streamOf, tempDir } from './oci-helpers.js';

const CONFIG = { architecture: 'amd64', os: 'linux' };

/**
 * A layout with tag `good`: layer 0 gzip (small), layer 1 uncompressed (5 MiB: over
 * OFF_THREAD_HASH_MIN, so its digests are checked on a worker thread), layer 2 zstd.
 */
async function fixture(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t);
  const layout = join(dir, 'img');
  const tars = [
    await makeTar([{ name: 'a', type: 'file', content: 'alpha' }]),
    await makeTar([{ name: 'big', type: 'file', content: pseudoRandom(5 << 20, 5) }]),
    await makeTar([{ name: 'z', type: 'file', content: 'zeta'.repeat(100) }]),
  ];
  const opts: LayerOptions[] = [{ compression: 'gzip' }, { compression: 'none' }, { compression: 'zstd' }];
  const w = await createImageWriter(`oci:${layout}:good`);
  for (const [i, b] of tars.entries()) await w.addLayer(streamOf(b), opts[i]);
  const res = await w.commit({ config: CONFIG });
  const blob = (digest: string) => join(layout, 'blobs', 'sha256', digest.slice(7));
  /** Store a modified copy of the manifest under `tag`. */
  const retag = async (tag: string, edit: (m: ImageManifest) => void | Promise<void>) => {
    const m = structuredClone(res.manifest);
    await edit(m);
    const lw = await OciLayoutWriter.open(layout);
    await lw.putManifest(m, { tag });
  };
  return { dir, layout, tars, res, blob, retag };
}

t.test('malformed references are UsageErrors naming the reference', async (t) => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['busybox', /expected TRANSPORT:DETAILS/],
    ['oci:', /oci: needs a path/],
    ['oci:/x:', /empty tag/],
    ['oci:/x:bad tag', /tag "bad tag" is not a valid OCI ref name/],
    ['oci-archive::t', /needs a path/],
    ['docker:busybox', /must be followed by "\/\/"/],
    ['docker://', /needs an image name/],
    ['docker://Quay.io/Foo/bar', /must be lowercase/],
    ['docker://localhost:5000/a//b', /empty path component/],
    ['docker://host/a:b:c', /invalid repository name component|not valid/],
    ['docker://host/img:-bad', /tag "-bad" is not valid/],
    ['docker://host/img@sha256:abc', /digest "sha256:abc" is not sha256/],
    [`docker://host/img:t@sha256:${'a'.repeat(64)}`, /tag and a digest together/],
    ['containers-storage:foo', /unsupported transport "containers-storage"/],
  ];
  for (const [ref, re] of cases) {
    t.throws(() => parseImageReference(ref), UsageError, `${JSON.stringify(ref)} → UsageError`);
    try {
      parseImageReference(ref);
    } catch (e) {
      t.match((e as Error).message, re, `${JSON.stringify(ref)}: ${(e as Error).message}`);
      t.ok((e as Error).message.includes(JSON.stringify(ref)), 'message names the reference');
      t.equal((e as UsageError).exitCode, 2);
    }
  }
  await t.rejects(openImage('oci:'), UsageError);
});

t.test('missing tag, missing layout, missing blob', async (t) => {
  const f = await fixture(t);
  await t.rejects(openImage(`oci:${f.layout}:nope`), {
    constructor: ImageNotFoundError,
    message: `oci:${f.layout}: no image tagged "nope" (tags present: "good")`,
  });
  await t.rejects(openImage(`oci:${join(f.dir, 'nothere')}`), { constructor: OciFormatError, message: /nothere: directory does not exist/ });
  await t.rejects(openImage(`oci-archive:${join(f.dir, 'nothere.tar')}`), { constructor: OciFormatError, message: /nothere\.tar: file does not exist/ });
  const gone = f.res.manifest.layers[0]!.digest;
  const { rm } = await import('node:fs/promises');
  await rm(f.blob(gone));
  const img = await openImage(`oci:${f.layout}:good`);
  await t.rejects(collect(img.openLayer(0)), { constructor: BlobNotFoundError, message: `blob ${gone} not found in oci:${f.layout}` });
  t.throws(() => img.openLayer(3), /layer index 3 out of range \(image sha256:[0-9a-f]+ has 3 layers\)/);
});

t.test('blob bytes that do not match the digest', async (t) => {
  const f = await fixture(t);
  // same size, one byte changed, in the uncompressed layer 1
  const d1 = f.res.manifest.layers[1]!.digest;
  const fh = await open(f.blob(d1), 'r+');
  await fh.write(Buffer.from([0x55]), 0, 1, 100_000);
  await fh.close();
  const img = await openImage(`oci:${f.layout}:good`);
  const err = await collect(img.openLayer(1)).then(
    () => undefined,
    (e: Error) => e,
  );
  t.type(err, OciDigestError);
  t.match(err!.message, `layer 1 blob ${d1} in oci:${f.layout}: digest mismatch: expected ${d1}, got sha256:`);
  await t.rejects(collect(img.openLayerCompressed(1)), OciDigestError, 'raw read is verified too');
  // tampered config: openImage itself fails, naming the config
  const cfg = f.res.manifest.config.digest;
  const bytes = await readFile(f.blob(cfg));
  await writeFile(f.blob(cfg), Buffer.from(bytes.toString().replace('amd64', 'arm64')));
  await t.rejects(openImage(`oci:${f.layout}:good`), { constructor: OciDigestError, message: new RegExp(`^config ${cfg} of manifest sha256:[0-9a-f]+ in oci:.*: digest mismatch`) });
  // tampered manifest
  await writeFile(f.blob(f.res.manifestDigest), Buffer.from(`${(await readFile(f.blob(f.res.manifestDigest))).toString()} `));
  await t.rejects(openImage(`oci:${f.layout}:good`), { constructor: OciSizeError, message: new RegExp(`^manifest ${f.res.manifestDigest} in oci:.*: size mismatch`) });
});

t.test('wrong size: truncated blob, and over-long input failing early', async (t) => {
  const f = await fixture(t);
  const l1 = f.res.manifest.layers[1]!;
  // descriptor claims fewer bytes than the blob holds: error as soon as the size is exceeded
  await f.retag('short', (m) => {
    m.layers[1]!.size = 1000;
  });
  const img = await openImage(`oci:${f.layout}:short`);
  const s = img.openLayer(1);
  let seen = 0;
  const err = await (async () => {
    try {
      for await (const c of s) seen += (c as Buffer).length;
    } catch (e) {
      return e as OciSizeError;
    }
    return undefined;
  })();
  t.type(err, OciSizeError);
  t.equal(err!.overLong, true);
  t.equal(err!.expected, 1000);
  t.ok(err!.actual < l1.size, `failed after ${err!.actual} of ${l1.size} bytes, before the end`);
  t.ok(seen <= 1000, `consumer saw ${seen} bytes, never more than the size`);
  t.match(err!.message, `layer 1 blob ${l1.digest} in oci:${f.layout}: size mismatch: more than the expected 1000 bytes`);

  // truncated blob file (gzip layer 0, zstd layer 2): size error at end, naming the blob
  for (const i of [0, 2]) {
    const d = f.res.manifest.layers[i]!;
    await truncate(f.blob(d.digest), d.size - 7);
    const good = await openImage(`oci:${f.layout}:good`);
    await t.rejects(collect(good.openLayer(i)), {
      constructor: OciSizeError,
      message: `layer ${i} blob ${d.digest} in oci:${f.layout}: size mismatch: expected ${d.size} bytes, got ${d.size - 7} (truncated)`,
    });
  }
});

t.test('diffid mismatch names the layer index and both digests', async (t) => {
  const f = await fixture(t);
  const lw = await OciLayoutWriter.open(f.layout);
  const img0 = await openImage(`oci:${f.layout}:good`);
  const bogus = `sha256:${'ab'.repeat(32)}`;
  const config = structuredClone(img0.config);
  config.rootfs.diff_ids[2] = bogus;
  const cdesc = await lw.addJson(config, MediaType.OciConfig);
  await f.retag('baddiff', (m) => {
    m.config = cdesc;
  });
  const img = await openImage(`oci:${f.layout}:baddiff`);
  t.ok((await collect(img.openLayer(0))).equals(f.tars[0]!), 'other layers still fine');
  const err = await collect(img.openLayer(2)).then(
    () => undefined,
    (e: Error) => e as DiffIdMismatchError,
  );
  t.type(err, DiffIdMismatchError);
  t.equal(err!.layerIndex, 2);
  t.equal(err!.expected, bogus);
  t.equal(err!.actual, img0.diffIds[2]);
  t.match(err!.message, `layer 2 (${f.res.manifest.layers[2]!.digest}): diffid mismatch: config rootfs.diff_ids[2] is ${bogus}, uncompressed tar hashes to ${img0.diffIds[2]}`);
  // the same for the large layer 1, whose diffid is hashed on a worker thread
  const config1 = structuredClone(img0.config);
  config1.rootfs.diff_ids[1] = bogus;
  const c1 = await lw.addJson(config1, MediaType.OciConfig);
  await f.retag('baddiff1', (m) => {
    m.config = c1;
  });
  await t.rejects(collect((await openImage(`oci:${f.layout}:baddiff1`)).openLayer(1)), {
    constructor: DiffIdMismatchError,
    layerIndex: 1,
    expected: bogus,
    actual: img0.diffIds[1],
  });
  // a config whose diff_ids count differs from the layers
  config.rootfs.diff_ids.pop();
  const c2 = await lw.addJson(config, MediaType.OciConfig);
  await f.retag('fewer', (m) => {
    m.config = c2;
  });
  await t.rejects(openImage(`oci:${f.layout}:fewer`), { constructor: OciFormatError, message: /rootfs\.diff_ids has 2 entries but the manifest has 3 layers/ });
});

t.test('unknown media types and undecompressable layers', async (t) => {
  const f = await fixture(t);
  await f.retag('weird', (m) => {
    m.layers[0]!.mediaType = 'application/x-weird-layer';
  });
  const img = await openImage(`oci:${f.layout}:weird`);
  t.throws(() => img.openLayer(0), {
    constructor: UnsupportedMediaTypeError,
    message: `layer 0 (${f.res.manifest.layers[0]!.digest}) of oci:${f.layout}: unsupported media type "application/x-weird-layer"`,
  });
  // a manifest of an unsupported kind in index.json
  const lw = await OciLayoutWriter.open(f.layout);
  const v1 = await lw.addJson({ schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [] }, 'application/vnd.docker.distribution.manifest.v1+prettyjws');
  await lw.updateIndex((idx) => {
    idx.manifests.push({ ...v1, annotations: { 'org.opencontainers.image.ref.name': 'v1' } });
  });
  await t.rejects(openImage(`oci:${f.layout}:v1`), {
    constructor: UnsupportedMediaTypeError,
    message: `manifest ${v1.digest} in oci:${f.layout}: unsupported media type "application/vnd.docker.distribution.manifest.v1+prettyjws"`,
  });
  // a config media type that is not an image config
  await f.retag('notimage', (m) => {
    m.config.mediaType = 'application/vnd.example.thing+json';
  });
  await t.rejects(openImage(`oci:${f.layout}:notimage`), { constructor: UnsupportedMediaTypeError, message: /config sha256:.*unsupported media type "application\/vnd.example.thing\+json"/ });
  // declared gzip / zstd, but the (correctly digested) bytes are a plain tar
  for (const mt of [MediaType.OciLayerGzip, MediaType.OciLayerZstd]) {
    await f.retag('lies', (m) => {
      m.layers[1]!.mediaType = mt;
    });
    const liar = await openImage(`oci:${f.layout}:lies`);
    await t.rejects(collect(liar.openLayer(1)), {
      constructor: LayerDecompressError,
      message: new RegExp(`^layer 1 \\(${f.res.manifest.layers[1]!.digest}\\) of oci:.*: (gzip|zstd) decompression failed`),
    });
  }
});

t.test('malformed JSON and archives', async (t) => {
  const f = await fixture(t);
  const idx = join(f.layout, 'index.json');
  const good = await readFile(idx);
  await writeFile(idx, '{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:abc","size":1}]}');
  await t.rejects(openImage(`oci:${f.layout}`), { constructor: OciFormatError, message: `oci:${f.layout} index.json.manifests[0].digest: malformed digest "sha256:abc"` });
  await writeFile(idx, '{not json');
  await t.rejects(openImage(`oci:${f.layout}`), { constructor: OciFormatError, message: /index\.json: invalid JSON/ });
  await writeFile(idx, good);
  // a truncated archive
  const archive = join(f.dir, 'a.tar');
  const w = await createImageWriter(`oci-archive:${archive}`);
  await w.addLayer(streamOf(f.tars[1]!), { compression: 'none' });
  await w.commit({ config: CONFIG });
  const { stat } = await import('node:fs/promises');
  await truncate(archive, (await stat(archive)).size - 100_000);
  await t.rejects(openImage(`oci-archive:${archive}`), { constructor: OciFormatError, message: /tar .*a\.tar header at offset \d+: entry data runs past end of file \(truncated archive\)|truncated/ });
  // A compressed archive (which skopeo would decompress on the fly) is named as such.
  const whole = join(f.dir, 'whole.tar');
  const w2 = await createImageWriter(`oci-archive:${whole}`);
  await w2.addLayer(streamOf(f.tars[1]!), { compression: 'none' });
  await w2.commit({ config: CONFIG });
  for (const [name, tool, ext] of [['gzip', 'gunzip', 'gz'], ['zstd', 'unzstd', 'zst'], ['xz', 'unxz', 'xz'], ['bzip2', 'bunzip2', 'bz2']]) {
    execFileSync(name, ['-k', '-q', whole]);
    const c = `${whole}.${ext}`;
    await t.rejects(openImage(`oci-archive:${c}`), { constructor: OciFormatError, message: `${c} is ${name}-compressed; oci-archive: reads an uncompressed tar (decompress it first, e.g. with ${tool})` }, `${name}-compressed archive`);
  }

  // PAX records read as strictly as Go's archive/tar (what skopeo writes and reads them with):
  // a size that Number() would take (hex, exponent, empty) or a malformed record is refused.
  const { paxRecord, tarWithPax } = await import('./helpers/tar.js');
  const paxArchive = async (records: string) => {
    const file = join(f.dir, 'pax.tar');
    await writeFile(file, tarWithPax(records, 'oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')));
    return `oci-archive:${file}`;
  };
  for (const v of ['0x1e', '3e1', '', '-30']) {
    await t.rejects(openImage(await paxArchive(paxRecord(`size=${v}`))), { constructor: OciFormatError, message: /pax\.tar header at offset 1024: bad PAX size/ }, `PAX size ${JSON.stringify(v)}`);
  }
  await t.rejects(openImage(await paxArchive('0x0f size=30\n')), { constructor: OciFormatError, message: /pax\.tar: PAX header at byte 0: malformed PAX record at byte 0/ }, 'hex record length');
  await t.rejects(openImage(await paxArchive('10 size30\n')), { constructor: OciFormatError, message: /pax\.tar: PAX header at byte 0: PAX record without "=" at byte 0/ }, 'record without "="');
});

t.test('verifying streams give the same verdicts hashing on this thread and on a worker', async (t) => {
  const { pipeline } = await import('node:stream/promises');
  const { createHash } = await import('node:crypto');
  const data = pseudoRandom((3 << 20) + 12345, 9);
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const other = `sha256:${'cd'.repeat(32)}`;
  const run = async (stage: VerifyStream | DiffIdCheck, input: Buffer) => {
    const out: Buffer[] = [];
    await pipeline(streamOf(input, 100_000), stage, async function* (src) {
      for await (const c of src) out.push(c as Buffer);
    });
    return Buffer.concat(out);
  };
  for (const offThread of [false, true]) {
    const how = offThread ? 'worker' : 'this thread';
    t.ok((await run(new VerifyStream({ digest, size: data.length }, 'blob x', { offThread }), data)).equals(data), `${how}: good blob passes unchanged`);
    t.ok((await run(new DiffIdCheck(0, 'sha256:l', digest, { offThread }), data)).equals(data), `${how}: good diffid passes unchanged`);
    await t.rejects(run(new VerifyStream({ digest: other, size: data.length }, 'blob x', { offThread }), data), { constructor: OciDigestError, expected: other, actual: digest }, `${how}: digest mismatch`);
    await t.rejects(run(new VerifyStream({ digest, size: data.length }, 'blob x', { offThread }), data.subarray(1)), { constructor: OciSizeError, overLong: false }, `${how}: short blob`);
    await t.rejects(run(new VerifyStream({ digest, size: data.length - 1 }, 'blob x', { offThread }), data), { constructor: OciSizeError, overLong: true }, `${how}: over-long blob`);
    await t.rejects(run(new DiffIdCheck(3, 'sha256:l', other, { offThread }), data), { constructor: DiffIdMismatchError, layerIndex: 3, expected: other, actual: digest }, `${how}: diffid mismatch`);
    const flipped = Buffer.from(data);
    flipped[flipped.length - 1]! ^= 1;
    await t.rejects(run(new DiffIdCheck(0, 'sha256:l', digest, { offThread }), flipped), DiffIdMismatchError, `${how}: last byte changed`);
  }
});
