import t from 'tap';
import { canonicalJson, createImageWriter, openImage, rewriteManifest, SkopeoError, MediaType } from '../src/oci/index.js';
import { collect, makeTar, run, sha256, startRegistry, streamOf, tempDir } from './oci-helpers.js';

t.test('docker:// round trip against a loopback docker-registry', async (t) => {
  const host = await startRegistry(t);
  const dir = await tempDir(t);
  const tars = [
    await makeTar([{ name: 'hello.txt', type: 'file', content: 'hello registry\n' }]),
    await makeTar([{ name: 'data', type: 'dir' }, { name: 'data/x', type: 'file', content: 'x'.repeat(100_000) }]),
  ];
  const ref = `docker://${host}/ostree-oci/test:v1`;
  const w = await createImageWriter(ref, { tlsVerify: false, tmpDir: dir });
  await Promise.all([w.addLayer(streamOf(tars[0]!), { compression: 'gzip' }), w.addLayer(streamOf(tars[1]!), { compression: 'zstd' })]);
  const pushed = await w.commit({ config: { architecture: 'amd64', os: 'linux' }, annotations: { 'ostree.commit': 'c0ffee' } });
  t.equal(pushed.reference, ref);
  t.equal(pushed.manifestDigest, sha256(canonicalJson(pushed.manifest)), 'registry kept our manifest bytes');

  // the registry serves what we pushed
  const r = await fetch(`http://${host}/v2/ostree-oci/test/manifests/v1`, { headers: { accept: MediaType.OciManifest } });
  t.equal(r.headers.get('docker-content-digest'), pushed.manifestDigest);

  const img = await openImage(ref, { tlsVerify: false, tmpDir: dir });
  t.equal(img.manifestDigest, pushed.manifestDigest);
  t.same(img.manifest.annotations, { 'ostree.commit': 'c0ffee' });
  for (let i = 0; i < tars.length; i++) t.ok((await collect(img.openLayer(i))).equals(tars[i]!), `layer ${i} round-trips through the registry`);
  await img.close();

  // by digest
  const byDigest = await openImage(`docker://${host}/ostree-oci/test@${pushed.manifestDigest}`, { tlsVerify: false, tmpDir: dir });
  t.equal(byDigest.manifestDigest, pushed.manifestDigest);
  await byDigest.close();

  // rewrite annotations registry → registry (new tag), layers untouched
  const sealed = await rewriteManifest(ref, `docker://${host}/ostree-oci/test:sealed`, (a) => ({ ...a, sealed: '1' }), { tlsVerify: false, tmpDir: dir });
  t.not(sealed.manifestDigest, pushed.manifestDigest);
  const info = JSON.parse(await run('skopeo', ['inspect', '--tls-verify=false', `docker://${host}/ostree-oci/test:sealed`]));
  t.equal(info.Digest, sealed.manifestDigest);
  t.same(info.Layers, pushed.manifest.layers.map((l) => l.digest));

  // pull into a local layout with our reader, then compare to skopeo's own copy
  const local = await rewriteManifest(ref, `oci:${dir}/local:v1`, () => {}, { tlsVerify: false, tmpDir: dir });
  t.equal(local.manifestDigest, pushed.manifestDigest, 'identity rewrite keeps the digest');

  // temp dirs were cleaned up
  const { readdir } = await import('node:fs/promises');
  t.same((await readdir(dir)).sort(), ['local'], 'no ostree-oci-pull-/push- temp dirs left');
});

t.test('Docker schema 2 images (pushed by skopeo --format v2s2) are read with Docker media types', async (t) => {
  const host = await startRegistry(t);
  const dir = await tempDir(t);
  const tars = [await makeTar([{ name: 'a', type: 'file', content: 'docker a' }]), await makeTar([{ name: 'b', type: 'file', content: 'docker b'.repeat(999) }])];
  const w = await createImageWriter(`oci:${dir}/src:v1`);
  for (const b of tars) await w.addLayer(streamOf(b), { compression: 'gzip' });
  await w.addLayer(streamOf(await makeTar([])), { compression: 'none' });
  await w.commit({ config: { architecture: 'amd64', os: 'linux' } });
  const ref = `docker://${host}/ostree-oci/v2s2:v1`;
  await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', '--format', 'v2s2', `oci:${dir}/src:v1`, ref]);
  const img = await openImage(ref, { tlsVerify: false, tmpDir: dir });
  t.equal(img.manifest.mediaType, MediaType.DockerManifest);
  t.equal(img.manifest.config.mediaType, MediaType.DockerConfig);
  t.same(
    img.layers.map((l) => l.mediaType),
    [MediaType.DockerLayerGzip, MediaType.DockerLayerGzip, MediaType.DockerLayerGzip],
    'skopeo gzips the uncompressed layer on the way to a registry',
  );
  t.same(img.diffIds, [...tars, await makeTar([])].map(sha256), 'diffids unchanged');
  const served = await fetch(`http://${host}/v2/ostree-oci/v2s2/manifests/v1`, { headers: { accept: MediaType.DockerManifest } });
  t.equal(img.manifestDigest, served.headers.get('docker-content-digest'), 'manifest digest is the registry one (no conversion)');
  for (let i = 0; i < tars.length; i++) t.ok((await collect(img.openLayer(i))).equals(tars[i]!), `docker layer ${i}`);
  t.equal((await collect(img.openLayer(2))).length, 1024, 'empty tar layer');
  await img.close();
  await t.rejects(rewriteManifest(ref, `oci:${dir}/x`, () => {}, { tlsVerify: false, tmpDir: dir }), /is Docker schema 2, which has no annotations/);
});

t.test('TLS verification is on by default (http registry is refused)', async (t) => {
  const host = await startRegistry(t);
  const dir = await tempDir(t);
  const pull = openImage(`docker://${host}/nothing/here:v1`, { tmpDir: dir });
  await t.rejects(pull, { constructor: SkopeoError, message: /^docker:\/\/127\.0\.0\.1:\d+\/nothing\/here:v1: skopeo copy failed .*(http|HTTP)/ });
  await t.rejects(pull, { message: /^(?!.*ostree-oci-pull-)/ }, 'the message does not name the temporary copy');
  await t.rejects(openImage(`docker://${host}/nothing/here:v1`, { tlsVerify: false, tmpDir: dir }), { constructor: SkopeoError, message: /manifest unknown|not found/i });
  const { readdir } = await import('node:fs/promises');
  t.same(await readdir(dir), [], 'failed pulls leave no temp dirs');
});

t.test('a failed push names the registry reference, not the temporary layout, and leaves no temp dir', async (t) => {
  const host = await startRegistry(t);
  const dir = await tempDir(t);
  const ref = `docker://${host}/ostree-oci/refused:v1`;
  const w = await createImageWriter(ref, { tmpDir: dir }); // TLS verification on: the http registry refuses
  await w.addLayer(streamOf(await makeTar([{ name: 'a', type: 'file', content: 'a' }])), { compression: 'gzip' });
  const push = w.commit({ config: { architecture: 'amd64', os: 'linux' } });
  await t.rejects(push, { constructor: SkopeoError, message: new RegExp(`^${ref.replace(/[.]/g, '\\.')}: skopeo copy failed .*(http|HTTP)`) });
  await t.rejects(push, { message: /^(?!.*ostree-oci-push-)/ }, 'the message does not name the temporary layout');
  await w.abort();
  const { readdir } = await import('node:fs/promises');
  t.same(await readdir(dir), [], 'no ostree-oci-push- temp dir left');
});

t.test('a missing --authfile is an error, not an anonymous pull or push', async (t) => {
  const host = await startRegistry(t);
  const dir = await tempDir(t);
  const missing = `${dir}/no-such-auth.json`;
  await t.rejects(openImage(`docker://${host}/ostree-oci/none:v1`, { tlsVerify: false, tmpDir: dir, authFile: missing }), {
    constructor: SkopeoError,
    message: `auth file ${missing}: ENOENT`,
  });
  // A push fails before any layer is written.
  await t.rejects(createImageWriter(`docker://${host}/ostree-oci/none:v1`, { tlsVerify: false, tmpDir: dir, authFile: missing }), {
    constructor: SkopeoError,
    message: `auth file ${missing}: ENOENT`,
  });
  const { readdir } = await import('node:fs/promises');
  t.same(await readdir(dir), [], 'no temp dirs left');
  const r = await fetch(`http://${host}/v2/ostree-oci/none/manifests/v1`);
  t.equal(r.status, 404, 'nothing was pushed');
});
