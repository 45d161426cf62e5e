import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import {
  ANNOTATION_REF_NAME,
  canonicalJson,
  createImageWriter,
  indexTar,
  MediaType,
  OciLayoutWriter,
  openImage,
  rewriteManifest,
  ImageNotFoundError,
  type LayerOptions,
} from '../src/oci/index.js';
import { collect, makeTar, pseudoRandom, run, sha256, streamOf, tempDir } from './oci-helpers.js';

const CONFIG = { architecture: 'amd64', os: 'linux', created: '1997-08-29T18:30:42Z', config: { Cmd: ['/bin/sh'] } };

async function fixtureTars(): Promise<Buffer[]> {
  return [
    await makeTar([
      { name: 'etc', type: 'dir' },
      { name: 'etc/hostname', type: 'file', content: 'box\n' },
      { name: 'usr', type: 'dir' },
      { name: 'usr/bin', type: 'dir' },
      { name: 'usr/bin/tool', type: 'file', content: pseudoRandom(300_000, 7), mode: 0o755 },
    ]),
    await makeTar([
      { name: 'usr', type: 'dir' },
      { name: 'usr/share', type: 'dir' },
      { name: 'usr/share/doc.txt', type: 'file', content: 'documentation '.repeat(5000) },
      { name: 'usr/share/link', type: 'symlink', target: 'doc.txt' },
    ]),
    await makeTar([
      { name: 'var', type: 'dir' },
      { name: 'var/data.bin', type: 'file', content: pseudoRandom(2_500_000, 3) },
    ]),
  ];
}

const LAYER_OPTS: LayerOptions[] = [{ compression: 'gzip' }, { compression: 'gzip', fast: true }, { compression: 'zstd', annotations: { 'ostree.components': 'a,b' } }];

/** Write the fixture image (layers compressed in parallel) to `ref`. */
async function writeFixture(ref: string, tars: Buffer[], chunk = 64 * 1024, annotations: Record<string, string> = { 'ostree.commit': 'abc' }) {
  const w = await createImageWriter(ref);
  await Promise.all(tars.map((b, i) => w.addLayer(streamOf(b, chunk), LAYER_OPTS[i])));
  return w.commit({ config: CONFIG, annotations });
}

let tars: Buffer[];
t.before(async () => {
  tars = await fixtureTars();
});

t.test('oci: write gzip, gzip-fast, zstd layers in parallel and read them back', async (t) => {
  const dir = await tempDir(t);
  const layout = join(dir, 'img');
  const res = await writeFixture(`oci:${layout}:v1`, tars);
  t.match(res.manifestDigest, /^sha256:[0-9a-f]{64}$/);
  t.equal(res.reference, `oci:${layout}:v1`);

  // on-disk structure
  t.same(JSON.parse(await readFile(join(layout, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  const indexBytes = await readFile(join(layout, 'index.json'), 'utf8');
  t.equal(indexBytes, canonicalJson(JSON.parse(indexBytes)), 'index.json is canonical JSON');
  const index = JSON.parse(indexBytes);
  t.equal(index.manifests.length, 1);
  t.equal(index.manifests[0].digest, res.manifestDigest);
  t.same(index.manifests[0].annotations, { [ANNOTATION_REF_NAME]: 'v1' });
  t.same(index.manifests[0].platform, { architecture: 'amd64', os: 'linux' });
  const blobs = await readdir(join(layout, 'blobs', 'sha256'));
  for (const b of blobs) t.equal(sha256(await readFile(join(layout, 'blobs', 'sha256', b))), `sha256:${b}`, `blob ${b} named by its digest`);
  t.notOk((await readdir(layout)).some((n) => n.startsWith('.')), 'no temp files left');

  const img = await openImage(`oci:${layout}:v1`);
  t.teardown(() => img.close());
  t.equal(img.manifestDigest, res.manifestDigest);
  t.equal(sha256(img.manifestBytes), img.manifestDigest);
  t.equal(img.manifestBytes.toString(), canonicalJson(img.manifest), 'manifest is canonical JSON');
  t.equal(img.configBytes.toString(), canonicalJson(img.config), 'config is canonical JSON');
  t.same(img.manifest.annotations, { 'ostree.commit': 'abc' });
  t.same(
    img.layers.map((l) => l.mediaType),
    [MediaType.OciLayerGzip, MediaType.OciLayerGzip, MediaType.OciLayerZstd],
  );
  t.same(img.layers[2]!.annotations, { 'ostree.components': 'a,b' });
  t.same(img.diffIds, tars.map(sha256), 'diffids are the sha256 of the uncompressed tars');
  t.equal(img.config.created, CONFIG.created);
  t.same(img.config.config, CONFIG.config);

  for (let i = 0; i < tars.length; i++) t.ok((await collect(img.openLayer(i))).equals(tars[i]!), `layer ${i} bytes round-trip`);

  // compression details: gzip header as flate2 writes it (OS=255; XFL 0 at level 6, 4 at level 1), zstd magic
  const raw = await Promise.all([0, 1, 2].map((i) => collect(img.openLayerCompressed(i))));
  t.same([...raw[0]!.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff], 'gzip level 6 header');
  t.same([...raw[1]!.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff], 'gzip level 1 header');
  t.same([...raw[2]!.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd], 'zstd frame magic');
  // the system zstd and gzip tools agree with our streams
  const { execFileSync } = await import('node:child_process');
  t.ok(execFileSync('zstd', ['-dc'], { input: raw[2]!, maxBuffer: 64 << 20 }).equals(tars[2]!), 'zstd(1) decompresses our zstd layer');
  t.ok(execFileSync('gzip', ['-dc'], { input: raw[1]!, maxBuffer: 64 << 20 }).equals(tars[1]!), 'gzip(1) decompresses our gzip layer');
});

t.test('reproducible: same layers give the same digests, whatever the input chunking', async (t) => {
  const dir = await tempDir(t);
  const a = await writeFixture(`oci:${join(dir, 'a')}:x`, tars, 64 * 1024);
  const b = await writeFixture(`oci:${join(dir, 'b')}:x`, tars, 777);
  const c = await writeFixture(`oci-archive:${join(dir, 'c.tar')}:x`, tars, 1 << 20);
  t.equal(a.manifestDigest, b.manifestDigest);
  t.equal(a.manifestDigest, c.manifestDigest);
  t.same(a.manifest, b.manifest);
  // writing into the same layout again dedupes blobs and yields the same manifest
  const before = (await readdir(join(dir, 'a', 'blobs', 'sha256'))).sort();
  const again = await writeFixture(`oci:${join(dir, 'a')}:x`, tars, 4096);
  t.equal(again.manifestDigest, a.manifestDigest);
  t.same((await readdir(join(dir, 'a', 'blobs', 'sha256'))).sort(), before, 'no new blobs');
  // an archive written twice is byte-identical
  const c2 = await writeFixture(`oci-archive:${join(dir, 'c2.tar')}:x`, tars, 5000);
  t.equal(c2.manifestDigest, c.manifestDigest);
  t.equal(sha256(await readFile(join(dir, 'c.tar'))), sha256(await readFile(join(dir, 'c2.tar'))), 'archives identical');
  // a different annotation gives a different manifest digest but the same blobs
  const d = await writeFixture(`oci:${join(dir, 'a')}:y`, tars, 64 * 1024, { other: '1' });
  t.not(d.manifestDigest, a.manifestDigest);
  t.same(d.manifest.layers, a.manifest.layers);
});

t.test('oci-archive: write, read in place, deterministic entry order', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'img.ociarchive');
  const res = await writeFixture(`oci-archive:${file}:latest`, tars);
  t.notOk((await readdir(dir)).some((n) => n !== 'img.ociarchive'), 'temp layout and temp tar removed');
  const entries = [...(await indexTar(file)).values()];
  const names = entries.map((e) => e.name);
  const blobNames = names.filter((n) => n.startsWith('blobs/sha256/'));
  t.same(names, ['blobs', 'blobs/sha256', ...[...blobNames].sort(), 'index.json', 'oci-layout']);
  const listing = await run('tar', ['--numeric-owner', '--full-time', '-tvf', file]);
  for (const line of listing.trim().split('\n')) t.match(line, /^(drwxr-xr-x|-rw-r--r--) 0\/0 .* 1970-01-01 00:00:00 /, `tar metadata: ${line}`);

  const img = await openImage(`oci-archive:${file}:latest`);
  t.teardown(() => img.close());
  t.equal(img.manifestDigest, res.manifestDigest);
  for (let i = 0; i < tars.length; i++) t.ok((await collect(img.openLayer(i))).equals(tars[i]!), `layer ${i} from archive`);
  // no tag: the sole manifest
  const img2 = await openImage(`oci-archive:${file}`);
  t.equal(img2.manifestDigest, res.manifestDigest);
  await img2.close();
});

t.test('skopeo accepts our images and we accept skopeo copies', async (t) => {
  const dir = await tempDir(t);
  const layout = join(dir, 'ours');
  const archive = join(dir, 'ours.tar');
  const a = await writeFixture(`oci:${layout}:v1`, tars);
  await writeFixture(`oci-archive:${archive}:v1`, tars);
  for (const ref of [`oci:${layout}:v1`, `oci-archive:${archive}:v1`]) {
    const info = JSON.parse(await run('skopeo', ['inspect', ref]));
    t.equal(info.Digest, a.manifestDigest, `skopeo inspect ${ref}: digest`);
    t.same(info.Layers, a.manifest.layers.map((l) => l.digest), `skopeo inspect ${ref}: layers`);
    const raw = await run('skopeo', ['inspect', '--raw', ref]);
    t.equal(sha256(raw), a.manifestDigest, 'raw manifest bytes are ours');
    const cfg = JSON.parse(await run('skopeo', ['inspect', '--config', ref]));
    t.same(cfg.rootfs.diff_ids, tars.map(sha256));
  }
  // oci → oci-archive → oci through skopeo, then read each copy with our reader
  const sArchive = join(dir, 'skopeo.tar');
  const sLayout = join(dir, 'skopeo-layout');
  await run('skopeo', ['copy', '--quiet', `oci:${layout}:v1`, `oci-archive:${sArchive}:copied`]);
  await run('skopeo', ['copy', '--quiet', `oci-archive:${sArchive}:copied`, `oci:${sLayout}:again`]);
  for (const ref of [`oci-archive:${sArchive}:copied`, `oci:${sLayout}:again`]) {
    const img = await openImage(ref);
    t.equal(img.manifestDigest, a.manifestDigest, `${ref}: manifest preserved by skopeo`);
    for (let i = 0; i < tars.length; i++) t.ok((await collect(img.openLayer(i))).equals(tars[i]!), `${ref}: layer ${i}`);
    await img.close();
  }
  // skopeo recompressing (different bytes, same diffids) is read fine too
  const recompressed = join(dir, 'recompressed');
  await run('skopeo', ['copy', '--quiet', '--dest-compress-format', 'gzip', '--dest-compress', `oci:${layout}:v1`, `oci:${recompressed}:r`]);
  const r = await openImage(`oci:${recompressed}:r`);
  t.same(r.diffIds, tars.map(sha256));
  for (let i = 0; i < tars.length; i++) t.ok((await collect(r.openLayer(i))).equals(tars[i]!), `recompressed layer ${i}`);
  await r.close();
});

t.test('umoci unpack --rootless of our image', async (t) => {
  const dir = await tempDir(t);
  const layout = join(dir, 'img');
  const w = await createImageWriter(`oci:${layout}:u`);
  await Promise.all([w.addLayer(streamOf(tars[0]!)), w.addLayer(streamOf(tars[1]!), { compression: 'gzip', fast: true }), w.addLayer(streamOf(tars[2]!), { compression: 'none' })]);
  await w.commit({ config: CONFIG });
  const bundle = join(dir, 'bundle');
  await run('umoci', ['unpack', '--rootless', '--image', `${layout}:u`, bundle]);
  const rootfs = join(bundle, 'rootfs');
  t.equal(await readFile(join(rootfs, 'etc/hostname'), 'utf8'), 'box\n');
  t.ok((await readFile(join(rootfs, 'usr/bin/tool'))).equals(pseudoRandom(300_000, 7)));
  t.equal((await stat(join(rootfs, 'usr/bin/tool'))).mode & 0o777, 0o755);
  t.equal(await readFile(join(rootfs, 'usr/share/link'), 'utf8'), 'documentation '.repeat(5000));
  t.ok((await readFile(join(rootfs, 'var/data.bin'))).equals(pseudoRandom(2_500_000, 3)));
  const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8'));
  t.same(spec.process.args, ['/bin/sh']);
});

t.test('index.json tags: replace same tag, keep others; untagged replaces all', async (t) => {
  const dir = await tempDir(t);
  const layout = join(dir, 'img');
  const one = async (tagRef: string, content: string) => {
    const w = await createImageWriter(tagRef);
    await w.addLayer(streamOf(await makeTar([{ name: 'f', type: 'file', content }])));
    return w.commit({ config: CONFIG });
  };
  const v1 = await one(`oci:${layout}:v1`, 'one');
  const v2 = await one(`oci:${layout}:v2`, 'two');
  const v1b = await one(`oci:${layout}:v1`, 'one again');
  const idx = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'));
  t.same(
    idx.manifests.map((d: { annotations: Record<string, string>; digest: string }) => [d.annotations[ANNOTATION_REF_NAME], d.digest]),
    [
      ['v2', v2.manifestDigest],
      ['v1', v1b.manifestDigest],
    ],
  );
  t.not(v1.manifestDigest, v1b.manifestDigest);
  t.equal((await openImage(`oci:${layout}:v1`)).manifestDigest, v1b.manifestDigest);
  await t.rejects(openImage(`oci:${layout}`), ImageNotFoundError, 'two images and no tag is ambiguous');
  await t.rejects(openImage(`oci:${layout}`), /lists 2 images; name one with :TAG \(tags present: "v2", "v1"\)/);
  const u = await one(`oci:${layout}`, 'untagged');
  const idx2 = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'));
  t.equal(idx2.manifests.length, 1);
  t.equal((await openImage(`oci:${layout}`)).manifestDigest, u.manifestDigest);
});

t.test('an image index in index.json: picks the platform, or the only one', async (t) => {
  const dir = await tempDir(t);
  const layout = join(dir, 'img');
  const mk = async (arch: string, tag: string) => {
    const w = await createImageWriter(`oci:${layout}:${tag}`);
    await w.addLayer(streamOf(await makeTar([{ name: 'arch', type: 'file', content: arch }])));
    return w.commit({ config: { ...CONFIG, architecture: arch } });
  };
  const amd = await mk('amd64', 'amd');
  const arm = await mk('arm64', 'arm');
  const lw = await OciLayoutWriter.open(layout);
  const addIndex = async (tag: string, entries: typeof amd[]) => {
    const desc = await lw.addJson(
      {
        schemaVersion: 2,
        mediaType: MediaType.OciIndex,
        manifests: entries.map((e) => ({ ...e.manifestDescriptor, annotations: undefined })),
      },
      MediaType.OciIndex,
    );
    await lw.updateIndex((idx) => {
      idx.manifests.push({ ...desc, annotations: { [ANNOTATION_REF_NAME]: tag } });
    });
    return desc;
  };
  await addIndex('multi', [arm, amd]);
  await addIndex('armonly', [arm]);
  const host = await openImage(`oci:${layout}:multi`, { platform: { os: 'linux', architecture: 'amd64' } });
  t.equal(host.manifestDigest, amd.manifestDigest, 'linux/amd64 chosen');
  t.equal((await collect(host.openLayer(0))).subarray(512, 517).toString(), 'amd64');
  const a = await openImage(`oci:${layout}:multi`, { platform: { architecture: 'arm64' } });
  t.equal(a.manifestDigest, arm.manifestDigest, 'linux/arm64 on request');
  const only = await openImage(`oci:${layout}:armonly`, { platform: { architecture: 'amd64' } });
  t.equal(only.manifestDigest, arm.manifestDigest, 'the only manifest when no platform matches');
  await t.rejects(openImage(`oci:${layout}:multi`, { platform: { architecture: 's390x' } }), {
    name: 'ImageNotFoundError',
    message: /no manifest for platform linux\/s390x \(has: linux\/arm64, linux\/amd64\)/,
  });
});

t.test('rewriteManifest changes annotations only', async (t) => {
  const dir = await tempDir(t);
  const layout = join(dir, 'img');
  const src = await writeFixture(`oci:${layout}:v1`, tars);
  const archive = join(dir, 'sealed.tar');
  const r = await rewriteManifest(`oci:${layout}:v1`, `oci-archive:${archive}:sealed`, (ann, m) => {
    t.same(ann, { 'ostree.commit': 'abc' });
    t.equal(m.layers.length, 3);
    return { ...ann, 'ostree.sealed': 'yes' };
  });
  t.equal(r.sourceManifestDigest, src.manifestDigest);
  t.not(r.manifestDigest, src.manifestDigest);
  const img = await openImage(`oci-archive:${archive}:sealed`);
  t.equal(img.manifestDigest, r.manifestDigest);
  t.same(img.manifest.annotations, { 'ostree.commit': 'abc', 'ostree.sealed': 'yes' });
  t.same(img.manifest.config, src.manifest.config, 'config untouched');
  t.same(img.manifest.layers, src.manifest.layers, 'layers untouched');
  for (let i = 0; i < tars.length; i++) t.ok((await collect(img.openLayer(i))).equals(tars[i]!));
  await img.close();
  // in place, to another tag of the same layout (mutating the map, removing the last annotation)
  const blobsBefore = (await readdir(join(layout, 'blobs', 'sha256'))).length;
  const r2 = await rewriteManifest(`oci:${layout}:v1`, `oci:${layout}:bare`, (ann) => {
    delete ann['ostree.commit'];
  });
  t.equal((await readdir(join(layout, 'blobs', 'sha256'))).length, blobsBefore + 1, 'only the new manifest blob added');
  const bare = await openImage(`oci:${layout}:bare`);
  t.equal(bare.manifestDigest, r2.manifestDigest);
  t.equal(bare.manifest.annotations, undefined, 'empty annotations are dropped');
  t.equal((await openImage(`oci:${layout}:v1`)).manifestDigest, src.manifestDigest, 'source tag kept');
});

t.test('memory stays flat while large layers stream through', async (t) => {
  const dir = await tempDir(t);
  const SIZE = 96 << 20;
  const block = pseudoRandom(1 << 20, 11);
  // a tar with one big file, generated lazily
  const { Readable } = await import('node:stream');
  const tar = await import('tar-stream');
  const bigTar = (): InstanceType<typeof Readable> => {
    const pack = tar.default.pack();
    const entry = pack.entry({ name: 'big.bin', size: SIZE, mtime: new Date(0) }) as unknown as import('node:stream').Writable;
    (async () => {
      for (let off = 0; off < SIZE; off += block.length) {
        const b = Buffer.from(block);
        b.writeUInt32LE(off, 0);
        if (!entry.write(b)) await new Promise((r) => entry.once('drain', r));
      }
      entry.end();
      pack.finalize();
    })();
    return pack as unknown as InstanceType<typeof Readable>;
  };
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  t.teardown(() => clearInterval(timer));
  const w = await createImageWriter(`oci:${join(dir, 'big')}:b`);
  const [z, g] = await Promise.all([w.addLayer(bigTar(), { compression: 'zstd' }), w.addLayer(bigTar(), { compression: 'gzip', fast: true })]);
  t.equal(z.uncompressedSize, g.uncompressedSize);
  t.equal(z.diffId, g.diffId);
  t.ok(z.uncompressedSize > SIZE);
  await w.commit({ config: CONFIG });
  const img = await openImage(`oci:${join(dir, 'big')}:b`);
  for (const i of [0, 1]) {
    const { createHash } = await import('node:crypto');
    const h = createHash('sha256');
    let n = 0;
    for await (const c of img.openLayer(i)) {
      h.update(c as Buffer);
      n += (c as Buffer).length;
    }
    t.equal(n, z.uncompressedSize, `layer ${i} size`);
    t.equal(`sha256:${h.digest('hex')}`, z.diffId, `layer ${i} digest`);
  }
  clearInterval(timer);
  const grew = (peak - base) / (1 << 20);
  t.ok(grew < 120, `rss grew by ${grew.toFixed(0)} MiB while streaming 2 × ${SIZE >> 20} MiB`);
});

t.test('zstd runs in worker threads: event loop stays live, concurrent streams share workers correctly', async (t) => {
  const { ZstdWorkerCompressStream } = await import('../src/oci/index.js');
  const { pipeline } = await import('node:stream/promises');
  const { Writable } = await import('node:stream');
  const { execFileSync } = await import('node:child_process');
  const inputs = [0, 1, 2, 3, 4].map((i) => Buffer.concat([pseudoRandom((3 << 20) + i * 12345, 20 + i), Buffer.from('pattern'.repeat(300_000))]));
  const compress = async (b: Buffer, chunk: number) => {
    const out: Buffer[] = [];
    await pipeline(streamOf(b, chunk), new ZstdWorkerCompressStream(3), new Writable({ write(c, _e, cb) { out.push(c); cb(); } }));
    return Buffer.concat(out);
  };
  // a synchronous source would starve timers if compression ran on this thread
  let fired = 0;
  const iv = setInterval(() => fired++, 1);
  const concurrent = await Promise.all(inputs.map((b) => compress(b, 64 * 1024)));
  clearInterval(iv);
  t.ok(fired >= 2, `timers fired ${fired} times during compression`);
  const serial: Buffer[] = [];
  for (const b of inputs) serial.push(await compress(b, 999));
  for (const [i, b] of inputs.entries()) {
    t.ok(concurrent[i]!.equals(serial[i]!), `stream ${i}: concurrent output equals serial output`);
    t.ok(execFileSync('zstd', ['-dc'], { input: concurrent[i]!, maxBuffer: 64 << 20 }).equals(b), `stream ${i}: zstd(1) decompresses it`);
  }
});

t.test('zstd streams with digests: diffid and blob digest equal sha256 of input and output, streams concurrent', async (t) => {
  const { ZstdWorkerCompressStream } = await import('../src/oci/index.js');
  const { pipeline } = await import('node:stream/promises');
  const { Writable } = await import('node:stream');
  const { createHash } = await import('node:crypto');
  const MiB = 1 << 20;
  // Empty, below one batch, exactly two batches, and uneven multi-batch inputs, all at once, so
  // that input hashes of several streams interleave on the pool's workers.
  const sizes = [0, 1000, 2 * MiB, 3 * MiB + 17, 5 * MiB - 1];
  const inputs = sizes.map((n, i) => pseudoRandom(n, 70 + i));
  const results = await Promise.all(
    inputs.map(async (b, i) => {
      const z = new ZstdWorkerCompressStream(3, { hash: true });
      const out: Buffer[] = [];
      await pipeline(streamOf(b, 4096 + i * 1000), z, new Writable({ write(c, _e, cb) { out.push(c); cb(); } }));
      return { out: Buffer.concat(out), digests: z.digests };
    }),
  );
  const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  for (const [i, b] of inputs.entries()) {
    const { out, digests } = results[i]!;
    t.equal(digests.uncompressedDigest, sha(b), `stream ${i} (${b.length} bytes): input digest`);
    t.equal(digests.uncompressedSize, b.length, `stream ${i}: input size`);
    t.equal(digests.digest, sha(out), `stream ${i}: output digest`);
    t.equal(digests.size, out.length, `stream ${i}: output size`);
  }
});
