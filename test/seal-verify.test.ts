/**
 * `ostree-oci seal SRC DST` and `ostree-oci verify IMGREF`: the seal → verify roundtrip passes;
 * config and layers are untouched; every edited annotation, a consistently replaced layer and a
 * corrupted layer blob fail with the check that names them; an unsealed image is "absent" (exit
 * 3). The per-layer digest is checked against its definition with an independently built layer
 * (whiteouts written as overlayfs char 0/0 devices, opaque as trusted.overlay.opaque=y).
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, craftTar, makeRichLayers, sh, T0, tarLayer } from './composefs-oci-helpers.js';
import { cli, ensureBuilt, tmp } from './helpers/tmp.js';
import { createImageWriter } from '../src/oci/index.js';
import { ANNOTATION_COMPOSEFS_DIGEST, ANNOTATION_LAYER_DIGEST } from '../src/composefs/image-digests.js';

ensureBuilt();

function ok(t: { equal: (a: unknown, b: unknown, m?: string) => void }, ...args: string[]): string {
  const r = cli(args);
  t.equal(r.status, 0, `ostree-oci ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

interface Manifest {
  config: { digest: string; size: number };
  layers: { digest: string; size: number; mediaType: string; annotations?: Record<string, string> }[];
  annotations?: Record<string, string>;
}

const blobPath = (layout: string, digest: string): string => join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));

function readManifest(layout: string, tag?: string): Manifest {
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const d = tag ? index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)! : index.manifests[0]!;
  return JSON.parse(readFileSync(blobPath(layout, d.digest), 'utf8')) as Manifest;
}

/** Edit the (single) manifest of a layout by hand: new blob, index.json pointing at it. */
function editManifest(layout: string, edit: (m: Manifest) => void): void {
  const indexPath = join(layout, 'index.json');
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { manifests: { digest: string; size: number }[] };
  const m = JSON.parse(readFileSync(blobPath(layout, index.manifests[0]!.digest), 'utf8')) as Manifest;
  edit(m);
  const bytes = Buffer.from(JSON.stringify(m));
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  writeFileSync(blobPath(layout, digest), bytes);
  index.manifests[0]!.digest = digest;
  index.manifests[0]!.size = bytes.length;
  writeFileSync(indexPath, JSON.stringify(index));
}

interface Report {
  outcome: string;
  checks: { name: string; status: string; expected?: string; got?: string; detail: string }[];
}

function verify(ref: string): { status: number; report: Report } {
  const r = cli(['verify', ref, '--json']);
  return { status: r.status, report: JSON.parse(r.stdout || '{"checks":[]}') as Report };
}

const statusOf = (r: Report): Record<string, string> => Object.fromEntries(r.checks.map((c) => [c.name, c.status]));

t.test('seal → verify roundtrip; config and layers untouched', async (t) => {
  const dir = tmp(t);
  const tars = await makeRichLayers(join(dir, 'src'));
  const src = join(dir, 'img');
  const ref = await buildImage(src, tars);
  const before = readManifest(src);

  let v = verify(ref);
  t.equal(v.status, 3, 'unsealed image: nothing to verify');
  t.same(new Set(Object.values(statusOf(v.report))), new Set(['absent']));

  const sealed = join(dir, 'sealed');
  const digest = ok(t, 'seal', ref, `oci:${sealed}:v1`).trim();
  t.match(digest, /^sha256:[0-9a-f]{64}$/);
  const after = readManifest(sealed, 'v1');
  t.equal(`sha256:${createHash('sha256').update(readFileSync(blobPath(sealed, digest))).digest('hex')}`, digest, 'printed digest names the new manifest');
  t.same(after.config, before.config, 'config descriptor unchanged');
  t.same(after.layers.map((l) => [l.digest, l.size, l.mediaType]), before.layers.map((l) => [l.digest, l.size, l.mediaType]), 'layer descriptors unchanged');
  for (const l of before.layers) t.same(readFileSync(blobPath(sealed, l.digest)), readFileSync(blobPath(src, l.digest)), `layer blob ${l.digest.slice(7, 19)} copied as is`);
  t.equal(after.annotations?.[ANNOTATION_COMPOSEFS_DIGEST], ok(t, 'composefs', ref).trim(), 'merged digest = `composefs IMGREF`');
  t.ok(after.layers.every((l) => /^[0-9a-f]{64}$/.test(l.annotations?.[ANNOTATION_LAYER_DIGEST] ?? '')), 'every layer annotated');
  // Layer 0 has no whiteouts: its own digest is the digest of a one-layer image of it.
  const one = await buildImage(join(dir, 'one'), [tars[0]!]);
  t.equal(after.layers[0]!.annotations![ANNOTATION_LAYER_DIGEST], ok(t, 'composefs', one).trim(), 'layer 0 digest = one-layer image digest');

  v = verify(`oci:${sealed}:v1`);
  t.equal(v.status, 0, 'verified');
  t.same(statusOf(v.report), { 'composefs-digest': 'pass', 'layer-0-composefs-digest': 'pass', 'layer-1-composefs-digest': 'pass', 'layer-2-composefs-digest': 'pass' });
  const text = cli(['verify', `oci:${sealed}:v1`]);
  t.match(text.stdout, /composefs-digest\s+ok/);
  t.match(text.stdout, /result: verified/);

  // In place: the tag stays on the new manifest.
  ok(t, 'seal', ref, `oci:${src}`);
  t.equal(verify(ref).status, 0, 'sealed in place, same tag');
  // oci-archive in and out.
  const arch = join(dir, 'sealed.tar');
  ok(t, 'seal', ref, `oci-archive:${arch}:x`);
  t.equal(verify(`oci-archive:${arch}:x`).status, 0, 'oci-archive');
});

t.test('per-layer digest: the layer alone with whiteouts as overlayfs whiteouts', async (t) => {
  const dir = tmp(t);
  const base = await craftTar(join(dir, 'base.tar'), [
    { name: 'etc/', type: 'directory' },
    { name: 'etc/old', content: 'old\n' },
    { name: 'data/', type: 'directory' },
    { name: 'data/lower', content: 'lower\n' },
    { name: 'bin/', type: 'directory' },
    { name: 'bin/tool', content: 'x'.repeat(100) },
  ]);
  const top = await craftTar(join(dir, 'top.tar'), [
    { name: 'etc/.wh.old', mtime: T0 + 5, uid: 7, gid: 8 },
    { name: 'data/.wh..wh..opq' },
    { name: 'data/new', content: 'new\n', mtime: T0 + 9 },
    { name: 'bin/tool2', type: 'link', linkname: 'bin/tool' },
  ]);
  const ref = await buildImage(join(dir, 'img'), [base, top]);
  const sealed = `oci:${join(dir, 'sealed')}`;
  ok(t, 'seal', ref, sealed);
  const m = readManifest(join(dir, 'sealed'));
  // The same layer as overlayfs stores it, built on disk and tarred by GNU tar: char 0/0 (mode 0)
  // for the whiteout, the opaque xattr on its (implicit: 0755 root, newest mtime) directory, the
  // lower file copied for the link.
  const e = join(dir, 'equiv');
  sh(`mkdir -p '${e}/etc' '${e}/data' '${e}/bin' && cd '${e}' && mknod etc/old c 0 0 && chmod 000 etc/old && chown -h 7:8 etc/old \
    && echo new > data/new && printf 'x%.0s' $(seq 100) > bin/tool2 && setfattr -n trusted.overlay.opaque -v y data \
    && touch -d @${T0 + 5} etc/old && touch -d @${T0 + 9} data/new etc data bin && touch -d @${T0} bin/tool2 && touch -d @${T0 + 9} bin`);
  tarLayer(e, join(dir, 'equiv.tar'), ['etc', 'data', 'bin']);
  const equiv = await buildImage(join(dir, 'equiv-img'), [join(dir, 'equiv.tar')]);
  const expected = ok(t, 'composefs', equiv, '--xattrs', 'all').trim();
  t.equal(m.layers[1]!.annotations![ANNOTATION_LAYER_DIGEST], expected, 'layer 1 digest = its overlayfs form');
  const dump = ok(t, 'composefs', equiv, '--xattrs', 'all', '--dump');
  t.match(dump, /^\/etc\/old 0 20000 1 7 8 0 1700000005\.0 /m, 'whiteout as char 0/0');
  t.match(dump, /^\/data .* trusted\.overlay\.opaque=y$/m, 'opaque marker');
});

t.test('a name a layer whites out and fills again: seal and verify work, the layer alone is overlayfs-shaped', async (t) => {
  const dir = tmp(t);
  const base = await craftTar(join(dir, 'base.tar'), [
    { name: 'd/', type: 'directory' },
    { name: 'd/old', content: 'old\n' },
    { name: 'e/', type: 'directory' },
    { name: 'e/old', content: 'old\n' },
    { name: 'f/', type: 'directory' },
    { name: 'g', content: 'lower g\n' },
  ]);
  // d: whited out, then a file under it (d is implicit); e: whited out, then its opaque marker;
  // f: whited out, then an explicit directory entry; g: whited out, then a file of that name.
  const top = await craftTar(join(dir, 'top.tar'), [
    { name: '.wh.d' },
    { name: 'd/new', content: 'new\n', mtime: T0 + 9 },
    { name: '.wh.e' },
    { name: 'e/.wh..wh..opq' },
    { name: '.wh.f' },
    { name: 'f/', type: 'directory', mtime: T0 + 3 },
    { name: '.wh.g' },
    { name: 'g', content: 'upper g\n' },
  ]);
  const ref = await buildImage(join(dir, 'img'), [base, top]);
  const merged = ok(t, 'composefs', ref).trim();
  const sealed = `oci:${join(dir, 'sealed')}`;
  ok(t, 'seal', ref, sealed);
  const m = readManifest(join(dir, 'sealed'));
  t.equal(m.annotations?.[ANNOTATION_COMPOSEFS_DIGEST], merged, 'merged digest as `composefs IMGREF` computes it');
  const v = verify(sealed);
  t.equal(v.status, 0, 'verified');
  t.same(statusOf(v.report), { 'composefs-digest': 'pass', 'layer-0-composefs-digest': 'pass', 'layer-1-composefs-digest': 'pass' });
  // Layer 1 as overlayfs stores it, on disk and tarred by GNU tar: d, e and f opaque directories
  // (d and e implicit: 0755 root, the newest mtime), g the new file, no whiteout device at all.
  const e = join(dir, 'equiv');
  sh(`mkdir -p '${e}/d' '${e}/e' '${e}/f' && cd '${e}' && echo new > d/new && echo 'upper g' > g \
    && for x in d e f; do setfattr -n trusted.overlay.opaque -v y $x; done \
    && touch -d @${T0} g && touch -d @${T0 + 9} d/new d e && touch -d @${T0 + 3} f`);
  tarLayer(e, join(dir, 'equiv.tar'), ['d', 'e', 'f', 'g']);
  const equiv = await buildImage(join(dir, 'equiv-img'), [join(dir, 'equiv.tar')]);
  t.equal(m.layers[1]!.annotations![ANNOTATION_LAYER_DIGEST], ok(t, 'composefs', equiv, '--xattrs', 'all').trim(), 'layer 1 digest = its overlayfs form');
});

t.test('per-layer digest: whiteouts inside an opaque directory are left out, so opacity is not lost', async (t) => {
  const dir = tmp(t);
  const base = await craftTar(join(dir, 'base.tar'), [
    { name: 'd/', type: 'directory' },
    { name: 'd/secret', content: 'lower\n' },
    { name: 'd/g', content: 'g\n' },
  ]);
  // Same entries under d; A also whites d out (so d is opaque), C marks it opaque and has a
  // whiteout deeper down (its parent d/sub implicit), B leaves d transparent.
  const same = [
    { name: 'd/', type: 'directory' as const, mtime: T0 + 2 },
    { name: 'd/f', content: 'f\n', mtime: T0 + 4 },
    { name: 'd/.wh.g' },
  ];
  const layerA = await craftTar(join(dir, 'a.tar'), [{ name: '.wh.d' }, ...same]);
  const layerB = await craftTar(join(dir, 'b.tar'), same);
  const layerC = await craftTar(join(dir, 'c.tar'), [{ name: 'd/.wh..wh..opq' }, ...same, { name: 'd/sub/.wh.x' }]);
  const layerDigest = async (top: string, name: string): Promise<{ merged: string; layer: string }> => {
    const img = await buildImage(join(dir, name), [base, top]);
    const sealed = join(dir, `${name}-sealed`);
    ok(t, 'seal', img, `oci:${sealed}`);
    t.equal(verify(`oci:${sealed}`).status, 0, `${name}: seal → verify`);
    const m = readManifest(sealed);
    return { merged: m.annotations![ANNOTATION_COMPOSEFS_DIGEST]!, layer: m.layers[1]!.annotations![ANNOTATION_LAYER_DIGEST]! };
  };
  const a = await layerDigest(layerA, 'a');
  const b = await layerDigest(layerB, 'b');
  const c = await layerDigest(layerC, 'c');
  t.not(a.merged, b.merged, 'the merged trees differ (d/secret hidden in A only)');
  t.not(a.layer, b.layer, 'so do the per-layer digests');
  // The overlayfs forms on disk: A and C an opaque d without whiteouts, B a plain d with g's.
  const equiv = async (name: string, script: string): Promise<string> => {
    const e = join(dir, `${name}-equiv`);
    sh(`mkdir -p '${e}/d' && cd '${e}' && echo f > d/f && ${script} && touch -d @${T0 + 4} d/f && touch -d @${T0 + 2} d`);
    tarLayer(e, join(dir, `${name}-equiv.tar`), ['d']);
    return ok(t, 'composefs', await buildImage(join(dir, `${name}-equiv-img`), [join(dir, `${name}-equiv.tar`)]), '--xattrs', 'all').trim();
  };
  t.equal(a.layer, await equiv('a', 'setfattr -n trusted.overlay.opaque -v y d'), 'A: opaque d, no whiteout device');
  t.equal(b.layer, await equiv('b', `mknod d/g c 0 0 && chmod 000 d/g && touch -d @${T0} d/g`), 'B: d with the whiteout device');
  t.equal(
    c.layer,
    await equiv('c', `mkdir d/sub && touch -d @${T0 + 4} d/sub && setfattr -n trusted.overlay.opaque -v y d`),
    'C: opaque d, its implicit d/sub kept (0755 root, newest mtime), no whiteout devices',
  );
});

t.test('edited annotations, replaced and corrupted layers fail by name', async (t) => {
  const dir = tmp(t);
  const tars = await makeRichLayers(join(dir, 'src'));
  const ref = await buildImage(join(dir, 'img'), tars);
  const sealedDir = join(dir, 'sealed');
  ok(t, 'seal', ref, `oci:${sealedDir}`);
  const good = readManifest(sealedDir);
  const flip = (h: string): string => `${h[0] === '0' ? '1' : '0'}${h.slice(1)}`;

  // 1. The merged annotation edited.
  editManifest(sealedDir, (m) => {
    m.annotations![ANNOTATION_COMPOSEFS_DIGEST] = flip(m.annotations![ANNOTATION_COMPOSEFS_DIGEST]!);
  });
  let v = verify(`oci:${sealedDir}`);
  t.equal(v.status, 1);
  t.same(statusOf(v.report), { 'composefs-digest': 'fail', 'layer-0-composefs-digest': 'pass', 'layer-1-composefs-digest': 'pass', 'layer-2-composefs-digest': 'pass' });
  const c = v.report.checks[0]!;
  t.equal(c.expected, flip(good.annotations![ANNOTATION_COMPOSEFS_DIGEST]!), 'expected = the annotation');
  t.equal(c.got, good.annotations![ANNOTATION_COMPOSEFS_DIGEST], 'got = recomputed');
  const text = cli(['verify', `oci:${sealedDir}`]);
  t.match(text.stdout, /composefs-digest\s+FAILED[\s\S]*expected [0-9a-f]{64}\n\s+got\s+[0-9a-f]{64}/);
  t.match(text.stdout, /result: NOT verified/);

  // 2. A layer annotation edited (merged restored).
  editManifest(sealedDir, (m) => {
    m.annotations = good.annotations!;
    m.layers[1]!.annotations![ANNOTATION_LAYER_DIGEST] = flip(m.layers[1]!.annotations![ANNOTATION_LAYER_DIGEST]!);
  });
  v = verify(`oci:${sealedDir}`);
  t.equal(v.status, 1);
  t.same(statusOf(v.report), { 'composefs-digest': 'pass', 'layer-0-composefs-digest': 'pass', 'layer-1-composefs-digest': 'fail', 'layer-2-composefs-digest': 'pass' });

  // 3. Not a digest at all; an annotation removed.
  editManifest(sealedDir, (m) => {
    m.layers[1]!.annotations![ANNOTATION_LAYER_DIGEST] = 'sha256:nope';
    delete m.layers[2]!.annotations;
  });
  v = verify(`oci:${sealedDir}`);
  t.equal(v.status, 1);
  t.same(statusOf(v.report), { 'composefs-digest': 'pass', 'layer-0-composefs-digest': 'pass', 'layer-1-composefs-digest': 'fail', 'layer-2-composefs-digest': 'absent' });
  t.match(v.report.checks[2]!.detail, /not 64 lower-case hex/);

  // 3b. Partly sealed: the manifest annotation and one layer's removed, the others intact. Nothing
  // vouches for the merged tree, so this is not "verified".
  editManifest(sealedDir, (m) => {
    m.layers = good.layers.map((l) => ({ ...l }));
    delete m.annotations;
    delete m.layers[2]!.annotations;
  });
  v = verify(`oci:${sealedDir}`);
  t.equal(v.status, 1, 'partly sealed: not verified');
  t.same(statusOf(v.report), { 'composefs-digest': 'absent', 'layer-0-composefs-digest': 'pass', 'layer-1-composefs-digest': 'pass', 'layer-2-composefs-digest': 'absent' });
  t.same(v.report.checks.map((c) => Boolean((c as { required?: boolean }).required)), [true, false, false, true], 'the missing annotations are required');
  // Only the manifest annotation (layers unsealed, as another sealing tool may do): verified.
  editManifest(sealedDir, (m) => {
    m.annotations = good.annotations!;
    for (const l of m.layers) delete l.annotations;
  });
  v = verify(`oci:${sealedDir}`);
  t.equal(v.status, 0, 'manifest annotation alone: verified');

  // 4. A consistent image (valid digests, diffids) whose layer 2 was replaced, annotations kept.
  const other = await craftTar(join(dir, 'other.tar'), [{ name: 'x/y/z', content: 'different\n' }]);
  const w = await createImageWriter(`oci:${join(dir, 'swapped')}`);
  const layers = [];
  for (const [i, p] of [tars[0]!, tars[1]!, other].entries()) {
    layers.push(await w.addLayer(createReadStream(p), { compression: 'gzip', annotations: good.layers[i]!.annotations! }));
  }
  await w.commit({ config: { architecture: 'amd64', os: 'linux' }, layers, annotations: good.annotations! });
  v = verify(`oci:${join(dir, 'swapped')}`);
  t.equal(v.status, 1);
  t.same(statusOf(v.report), { 'composefs-digest': 'fail', 'layer-0-composefs-digest': 'pass', 'layer-1-composefs-digest': 'pass', 'layer-2-composefs-digest': 'fail' });

  // 5. A corrupted layer blob: the layer cannot be read; named, and nothing after it verifies.
  const fresh = join(dir, 'fresh');
  ok(t, 'seal', ref, `oci:${fresh}`);
  const blob = blobPath(fresh, good.layers[1]!.digest);
  const b = readFileSync(blob);
  b[b.length >> 1] ^= 0x55;
  writeFileSync(blob, b);
  v = verify(`oci:${fresh}`);
  t.equal(v.status, 1);
  t.same(statusOf(v.report), { 'composefs-digest': 'fail', 'layer-0-composefs-digest': 'pass', 'layer-1-composefs-digest': 'fail', 'layer-2-composefs-digest': 'fail' });
  t.match(v.report.checks[2]!.detail, new RegExp(`cannot read layer 1 \\(${good.layers[1]!.digest}\\).*(digest|decompress|gzip|header)`));

  // Errors of the commands themselves.
  let r = cli(['verify', `oci:${join(dir, 'nope')}`]);
  t.equal(r.status, 1);
  t.match(r.stderr, /^error: .*nope/m);
  r = cli(['seal', `oci:${join(dir, 'nope')}`, `oci:${join(dir, 'out')}`]);
  t.not(r.status, 0);
  t.match(r.stderr, /^error: .*nope/m);
  r = cli(['seal', `oci:${fresh}`, `oci:${join(dir, 'out2')}`]);
  t.equal(r.status, 1, 'sealing a corrupt image fails');
  t.match(r.stderr, /layer 1/);
  r = cli(['verify', `oci:${fresh}`, '--pubkeys', '/dev/null']);
  t.equal(r.status, 2);
});

t.test('encapsulate --composefs adds the same annotations seal computes', async (t) => {
  const dir = tmp(t);
  const tree = join(dir, 'tree');
  sh(`mkdir -p '${tree}/usr/bin' '${tree}/usr/lib/deep' '${tree}/etc' && head -c 70000 /dev/urandom > '${tree}/usr/bin/tool' \
    && ln '${tree}/usr/bin/tool' '${tree}/usr/bin/tool2' && echo small > '${tree}/usr/lib/deep/s' && ln -s ../bin/tool '${tree}/usr/lib/t' \
    && echo conf > '${tree}/etc/c' && setfattr -n user.x -v y '${tree}/usr/lib/deep/s'`);
  const repo = join(dir, 'repo');
  sh(`ostree init --repo='${repo}' --mode=bare-user && ostree commit --repo='${repo}' -b main --tree=dir='${tree}' --owner-uid=0 --owner-gid=0 >/dev/null`);
  const a = `oci:${join(dir, 'a')}`;
  const b = `oci:${join(dir, 'b')}`;
  const withCfs = ok(t, 'encapsulate', '--repo', repo, 'main', a, '--composefs', '--max-layers', '3').trim();
  ok(t, 'encapsulate', '--repo', repo, 'main', b, '--max-layers', '3');
  const sealed = ok(t, 'seal', b, b).trim();
  t.equal(withCfs, sealed, 'same manifest digest as encapsulate + seal');
  const m = readManifest(join(dir, 'a'));
  t.ok(m.layers.length >= 2, `${m.layers.length} layers (chunked)`);
  const v = verify(a);
  t.equal(v.status, 0, 'verify passes');
  t.ok(v.report.checks.every((c) => c.status === 'pass'));
  t.equal(m.annotations![ANNOTATION_COMPOSEFS_DIGEST], ok(t, 'composefs', a).trim());
  // --json reports the digests it annotated.
  const j = JSON.parse(ok(t, 'encapsulate', '--repo', repo, 'main', `oci:${join(dir, 'c')}`, '--composefs', '--max-layers', '3', '--json')) as {
    composefsDigest: string;
    layers: Array<{ composefsDigest: string }>;
  };
  t.equal(j.composefsDigest, m.annotations![ANNOTATION_COMPOSEFS_DIGEST], '--json: composefsDigest');
  t.same(j.layers.map((l) => l.composefsDigest), m.layers.map((l) => l.annotations![ANNOTATION_LAYER_DIGEST]), '--json: each layer');
});
