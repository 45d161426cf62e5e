/**
 * `image pull` of a signed pure ostree image (commit-composefs + sign --keyfile, encapsulated with
 * --max-layers 3): direct mode keeps the original commit and its commitmeta as the image commit
 * (prepare-root's check passes on the image ref); merge mode writes an ostree-ext-style merge
 * commit whose parent is the intact base. Also: list / inspect / remove / prune, the metadata
 * commit's exact format, reuse by digest and by diffid.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Repo } from '../src/ostree/repo.js';
import { createImageWriter, openImage, type LayerResult } from '../src/oci/index.js';
import { escapeRef } from '../src/store/refescape.js';
import { readLayout } from './container-helpers.js';
import { CLI, cli, ostreeFsck, tmp } from './helpers/tmp.js';
import { commitInfo, newRepo, refs, run, runJson, signedComposefsRepo, treeMap } from './store-helpers.js';

const sha = (s: string | Buffer): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

const root = tmp(t, 'ostree-oci-store-pull-');
const src = signedComposefsRepo(root);
const imgDir = join(root, 'img');
run('encapsulate', '--repo', src.repo, 'main', `oci:${imgDir}`, '--max-layers', '3');
const imgref = `oci:${imgDir}`;
const layout = readLayout(imgDir);
const imageRef = `ostree/container/image/${escapeRef(imgref)}`;
const metaRef = `ostree/container/meta/${escapeRef(imgref)}`;
const srcCommitmeta = commitInfo(src.repo, src.commit).commitmeta!;

interface Pull {
  commit: string;
  baseCommit: string | null;
  mode: string;
  metaRef: string | null;
  metaCommit: string | null;
  alreadyPresent: boolean;
  manifestDigest: string;
  layersFetched: number;
  layersReused: number;
  bytesFetched: number;
  bytesReused: number;
  layers: Array<{ role: string; action: string; digest: string; ref: string; commit: string; size: number; bytesRead: number }>;
  imageCommitmeta: { present: boolean; signed: boolean; keys: string[] };
  baseCommitmeta: { present: boolean; signed: boolean } | null;
  notes: string[];
}

const prepareRoot = (repo: string, rev: string) => cli(['verify', '--repo', repo, rev, '--pubkeys', src.pub, '--composefs']);

t.test('the image under test is chunked and signed', async (t) => {
  t.ok(layout.manifest.layers.length >= 3, `${layout.manifest.layers.length} layers`);
  t.ok(srcCommitmeta.length > 0);
  t.equal(prepareRoot(src.repo, 'main').status, 0, 'the source commit passes prepare-root');
});

t.test('default (direct) mode: the image ref is the original commit, commitmeta intact', async (t) => {
  const repo = newRepo(join(root, 'direct'));
  const r = runJson<Pull>('image', 'pull', '--repo', repo, imgref);
  t.equal(r.mode, 'direct');
  t.equal(r.commit, src.commit, 'image commit = the signed commit');
  t.equal(r.baseCommit, src.commit);
  t.equal(r.manifestDigest, layout.manifestDigest);
  t.equal(r.layersFetched, layout.manifest.layers.length);
  t.equal(r.layersReused, 0);
  t.equal(r.bytesFetched, layout.manifest.layers.reduce((n, l) => n + l.size, 0), 'every compressed byte read once');
  t.ok(r.imageCommitmeta.signed, 'reported as signed');
  t.same(r.imageCommitmeta.keys, ['ostree.sign.ed25519']);

  const rs = refs(repo);
  t.equal(rs[imageRef], src.commit, 'ostree/container/image/<escaped> → B');
  t.equal(rs[metaRef], r.metaCommit);
  for (const l of layout.manifest.layers) t.ok(rs[`ostree/container/blob/${escapeRef(l.digest)}`], `blob ref for ${l.digest}`);
  t.equal(rs[`ostree/container/blob/${escapeRef(layout.manifest.layers[0]!.digest)}`], src.commit, 'commit layer ref → B');

  const c = commitInfo(repo, imageRef);
  t.ok(c.commitmeta!.equals(srcCommitmeta), 'commitmeta byte-identical to the source');
  t.ok(c.bytes.equals(commitInfo(src.repo, src.commit).bytes), 'commit bytes identical');
  const v = prepareRoot(repo, imageRef);
  t.equal(v.status, 0, `verify --composefs on the image ref passes:\n${v.stdout}${v.stderr}`);
  t.match(v.stdout, /commitmeta\s+ok[\s\S]*ed25519-signature\s+ok[\s\S]*composefs-digest\s+ok/);
  t.same([...treeMap(repo, imageRef)], [...treeMap(src.repo, src.commit)], 'same tree');

  // The metadata commit: exact format.
  const m = commitInfo(repo, metaRef);
  t.equal(m.commit.parent, null, 'no parent');
  t.same(
    m.commit.metadata.map(([k]) => k),
    ['ostree-oci.image-commit', 'ostree-oci.image-reference', 'ostree.container.image-config', 'ostree.manifest', 'ostree.manifest-digest'],
  );
  const meta = Object.fromEntries(m.commit.metadata.map(([k, v]) => [k, v.value as string]));
  t.equal(meta['ostree-oci.image-commit'], src.commit);
  t.equal(meta['ostree-oci.image-reference'], imgref);
  t.equal(meta['ostree.manifest-digest'], layout.manifestDigest);
  t.equal(sha(meta['ostree.manifest']!), layout.manifestDigest, 'stored manifest = the original bytes');
  t.equal(sha(meta['ostree.container.image-config']!), layout.manifest.config.digest, 'stored config = the original bytes');
  const mtree = treeMap(repo, metaRef);
  t.same([...mtree.keys()], ['/'], 'root is an empty tree');
  t.match(ostreeFsck(repo), /no errors/);

  // Chunk layers: ostree-ext's synthetic object-set commits (files named by their checksum).
  const r2 = Repo.open(repo);
  t.teardown(() => r2.close());
  for (const l of r.layers.filter((x) => x.role === 'chunk')) {
    const lc = r2.loadCommit(l.commit);
    t.equal(lc.commit.timestamp, 0n);
    t.same(lc.commit.metadata, []);
    t.equal(lc.commit.parent, null);
    const t0 = r2.loadDirTree(lc.commit.rootTree);
    t.same(t0.dirs, []);
    t.ok(t0.files.length > 0 && t0.files.every((f) => f.name === f.checksum), `chunk ${l.digest}: ${t0.files.length} objects named by checksum`);
    t.same(r2.loadDirMeta(lc.commit.rootMeta), { uid: 0, gid: 0, mode: 0o40755, xattrs: [] });
  }
  // Every content object of B is in exactly one chunk.
  const chunkObjects = r.layers.filter((x) => x.role === 'chunk').flatMap((l) => r2.loadDirTree(r2.loadCommit(l.commit).commit.rootTree).files.map((f) => f.checksum));
  const bObjects = new Set([...treeMap(repo, src.commit).values()].filter((e) => e.kind === 'file').map((e) => e.checksum));
  t.equal(chunkObjects.length, new Set(chunkObjects).size, 'no object in two chunks');
  t.same(new Set(chunkObjects), bObjects, 'chunks hold exactly the commit\'s content objects');

  // Pulling again: nothing fetched.
  const again = runJson<Pull>('image', 'pull', '--repo', repo, imgref);
  t.ok(again.alreadyPresent);
  t.equal(again.bytesFetched, 0);
  t.same(refs(repo), rs, 'refs unchanged');

  // list / inspect
  const list = runJson<Array<{ imgref: string; commit: string; signed: boolean; manifestDigest: string; mode: string }>>('image', 'list', '--repo', repo);
  t.same(
    list.map((i) => [i.imgref, i.commit, i.signed, i.manifestDigest, i.mode]),
    [[imgref, src.commit, true, layout.manifestDigest, 'direct']],
  );
  const ins = runJson<{ layers: Array<{ commit: string | null }>; composefsDigestV0: string | null; signed: boolean; manifestBytesExact: boolean }>(
    'image', 'inspect', '--repo', repo, imgref,
  );
  t.ok(ins.signed);
  t.ok(ins.manifestBytesExact);
  t.ok(ins.composefsDigestV0 && /^[0-9a-f]{64}$/.test(ins.composefsDigestV0));
  t.ok(ins.layers.every((l) => l.commit !== null));
  const text = run('image', 'list', '--repo', repo);
  t.match(text, new RegExp(`${layout.manifestDigest}[\\s\\S]*${src.commit} \\(direct\\)[\\s\\S]*signed: yes`));
});

t.test('--store-mode=merge: ostree-ext merge commit, parent = intact signed base', async (t) => {
  const repo = newRepo(join(root, 'merge'));
  const r = runJson<Pull>('image', 'pull', '--repo', repo, imgref, '--store-mode=merge');
  t.equal(r.mode, 'merge');
  t.equal(r.baseCommit, src.commit);
  t.not(r.commit, src.commit);
  t.equal(r.metaRef, null);
  t.ok(r.baseCommitmeta?.signed, 'base reported as signed');
  t.notOk(r.imageCommitmeta.present, 'the merge commit has no commitmeta');
  const rs = refs(repo);
  t.equal(rs[imageRef], r.commit);
  t.notOk(rs[metaRef], 'no metadata ref in merge mode');

  const m = commitInfo(repo, imageRef);
  t.equal(m.commit.parent, src.commit, 'parent = B');
  t.same(m.commit.metadata.map(([k]) => k), ['ostree.container.image-config', 'ostree.manifest', 'ostree.manifest-digest']);
  const meta = Object.fromEntries(m.commit.metadata.map(([k, v]) => [k, v.value as string]));
  t.equal(meta['ostree.manifest-digest'], layout.manifestDigest);
  t.same(JSON.parse(meta['ostree.manifest']!), layout.manifest);
  t.same(JSON.parse(meta['ostree.container.image-config']!), layout.config);
  const created = Date.parse(layout.config['created'] as string) / 1000;
  t.equal(m.commit.timestamp, BigInt(created), 'timestamp = image creation time');
  const b = commitInfo(repo, src.commit);
  t.equal(m.commit.rootTree, b.commit.rootTree, 'same root tree as B (no derived layers)');
  t.equal(m.commit.rootMeta, b.commit.rootMeta);
  t.ok(b.commitmeta!.equals(srcCommitmeta), "B's commitmeta intact");

  const onParent = prepareRoot(repo, `${imageRef}^`);
  t.equal(onParent.status, 0, `verify --composefs on the merge commit's parent passes:\n${onParent.stdout}`);
  const onMerge = prepareRoot(repo, imageRef);
  t.equal(onMerge.status, 1, 'the merge commit itself has no signatures');
  t.match(onMerge.stdout, /No commitmeta for commit/);
  t.match(ostreeFsck(repo), /no errors/);

  // Switching back to direct: reuses every layer, image ref → B again, merge commit unreferenced.
  const d = runJson<Pull>('image', 'pull', '--repo', repo, imgref);
  t.equal(d.mode, 'direct');
  t.equal(d.layersFetched, 0);
  t.equal(refs(repo)[imageRef], src.commit);
  t.ok(refs(repo)[metaRef]);
  t.equal(prepareRoot(repo, imageRef).status, 0);

  // An image built from a merge commit: its commit carries ostree.manifest* keys of the old image;
  // the store must still report the new image's manifest (metadata ref first).
  const reImg = `oci:${join(root, 'from-merge')}`;
  run('encapsulate', '--repo', repo, r.commit, reImg);
  const repo2 = newRepo(join(root, 'from-merge-dst'));
  const p2 = runJson<Pull>('image', 'pull', '--repo', repo2, reImg);
  t.equal(p2.commit, r.commit, 'image commit = the encapsulated merge commit');
  t.equal(p2.mode, 'direct');
  const l2 = runJson<Array<{ manifestDigest: string; mode: string }>>('image', 'list', '--repo', repo2);
  t.same(l2.map((i) => [i.manifestDigest, i.mode]), [[p2.manifestDigest, 'direct']]);
  t.not(p2.manifestDigest, layout.manifestDigest);
  t.ok(runJson<{ alreadyPresent: boolean }>('image', 'pull', '--repo', repo2, reImg).alreadyPresent, 'state read back correctly');
});

t.test('remove and prune', async (t) => {
  const repo = newRepo(join(root, 'prune'));
  const copy = join(root, 'img-copy');
  execFileSync('cp', ['-a', imgDir, copy]);
  const other = `oci:${copy}`;
  run('image', 'pull', '--repo', repo, imgref);
  const second = runJson<Pull>('image', 'pull', '--repo', repo, other);
  t.equal(second.layersFetched, 0, 'a second image with the same layers fetches nothing');
  t.equal(cli(['image', 'remove', '--repo', repo, `oci:${join(root, 'nope')}`]).status, 2, 'removing an unknown image is a usage error');
  // Several names, one unknown: nothing is removed (each used to go in its own transaction).
  const before = refs(repo);
  const mixed = cli(['image', 'remove', '--repo', repo, imgref, `oci:${join(root, 'nope')}`]);
  t.equal(mixed.status, 2, 'one unknown image among several: an error');
  t.match(mixed.stderr, /nope.*is not in the store.*nothing was removed/, 'names it and says nothing was removed');
  t.same(refs(repo), before, 'every ref is still there');
  let p = runJson<{ removedLayerRefs: unknown[]; keptLayerRefs: number }>('image', 'prune', '--repo', repo);
  t.equal(p.removedLayerRefs.length, 0, 'nothing unused');
  t.equal(p.keptLayerRefs, layout.manifest.layers.length);
  run('image', 'remove', '--repo', repo, imgref);
  p = runJson('image', 'prune', '--repo', repo);
  t.equal(p.removedLayerRefs.length, 0, 'layers still used by the second image');
  t.equal(prepareRoot(repo, `ostree/container/image/${escapeRef(other)}`).status, 0, 'second image intact after prune');
  run('image', 'remove', '--repo', repo, other);
  t.same(Object.keys(refs(repo)).filter((r) => !r.startsWith('ostree/container/blob/')), [], 'image and meta refs gone');
  p = runJson('image', 'prune', '--repo', repo);
  t.equal(p.removedLayerRefs.length, layout.manifest.layers.length);
  t.same(refs(repo), {});
  const r = Repo.open(repo);
  t.notOk(r.hasObject(4, src.commit), 'objects pruned');
  r.close();
  t.match(ostreeFsck(repo), /no errors/);
});

t.test('a recompressed image reuses every layer by diffid', async (t) => {
  // Same tars, gzip level 1: new blob digests, same diffids.
  const fast = join(root, 'img-fast');
  const img = await openImage(imgref);
  const w = await createImageWriter(`oci:${fast}`);
  const layers: LayerResult[] = [];
  for (let i = 0; i < img.layers.length; i++) {
    layers.push(await w.addLayer(img.openLayer(i), { fast: true, ...(img.layers[i]!.annotations ? { annotations: img.layers[i]!.annotations! } : {}) }));
  }
  const { rootfs: _r, ...config } = img.config;
  await w.commit({ config, layers, ...(img.manifest.annotations ? { annotations: img.manifest.annotations } : {}) });
  await img.close();
  const fl = readLayout(fast);
  t.notSame(fl.manifest.layers.map((l) => l.digest), layout.manifest.layers.map((l) => l.digest), 'blob digests differ');
  t.same(fl.config.rootfs.diff_ids, layout.config.rootfs.diff_ids, 'diffids equal');

  const repo = newRepo(join(root, 'diffid'));
  run('image', 'pull', '--repo', repo, imgref);
  const r = runJson<Pull>('image', 'pull', '--repo', repo, `oci:${fast}`);
  t.equal(r.layersFetched, 0, 'nothing fetched');
  t.equal(r.bytesFetched, 0);
  t.ok(r.layers.every((l) => l.action === 'reused-by-diffid'));
  t.equal(r.commit, src.commit);
  const rs = refs(repo);
  for (const l of fl.manifest.layers) t.ok(rs[`ostree/container/blob/${escapeRef(l.digest)}`], 'new blob refs written too');
  t.equal(prepareRoot(repo, `ostree/container/image/${escapeRef(`oci:${fast}`)}`).status, 0);
  t.match(ostreeFsck(repo), /no errors/);
});

t.test('layer data is streamed: memory does not grow with the layer size', async (t) => {
  const maxRss = (repo: string, ref: string): number => {
    const r = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, CLI, 'image', 'pull', '--repo', repo, ref, '--json'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
    return Number(r.stderr.trim().split('\n').pop()) * 1024;
  };
  const d = join(root, 'big');
  const big = signedComposefsRepo(d, { bigFileMiB: 64, key: src.key });
  const bigImg = `oci:${join(d, 'img')}`;
  run('encapsulate', '--repo', big.repo, 'main', bigImg, '--max-layers', '3', '--compression-fast');
  const small = maxRss(newRepo(join(d, 'dst-small')), imgref);
  const repo = newRepo(join(d, 'dst'));
  const large = maxRss(repo, bigImg);
  t.ok(large - small < 56 * 1048576, `max RSS ${(small / 1048576).toFixed(0)} MiB (1 MiB file) vs ${(large / 1048576).toFixed(0)} MiB (64 MiB file)`);
  t.equal(prepareRoot(repo, `ostree/container/image/${escapeRef(bigImg)}`).status, 0);
});

t.test('an image ref whose name does not unescape does not break list, pull or prune', async (t) => {
  const repo = newRepo(join(root, 'odd-ref'));
  const first = runJson<Pull>('image', 'pull', '--repo', repo, imgref);
  // Made by hand (or another tool): not an escaped image reference.
  execFileSync('ostree', ['refs', `--repo=${repo}`, '--create=ostree/container/image/bad_ZZ_x', first.commit]);
  const list = cli(['image', 'list', '--repo', repo, '--json']);
  t.equal(list.status, 0, `image list: ${list.stderr}`);
  const entries = JSON.parse(list.stdout) as Array<{ imgref: string; imageRef: string; error?: string }>;
  t.same(entries.map((e) => e.imageRef).sort(), [imageRef, 'ostree/container/image/bad_ZZ_x'].sort(), 'both images listed');
  t.match(entries.find((e) => e.imageRef.endsWith('bad_ZZ_x'))?.error, /ref ostree\/container\/image\/bad_ZZ_x: .*ostree refs --delete/, 'the odd one names its ref and how to remove it');
  t.notOk(entries.find((e) => e.imageRef === imageRef)?.error, 'the pulled image is fine');
  const copy = join(root, 'odd-ref-img');
  execFileSync('cp', ['-a', imgDir, copy]);
  const again = cli(['image', 'pull', '--repo', repo, `oci:${copy}`, '--json']);
  t.equal(again.status, 0, `a later pull still works: ${again.stderr}`);
  // Without metadata its layers are unknown: prune refuses, and says how to get out of it.
  const refused = cli(['image', 'prune', '--repo', repo, '--keep-objects']);
  t.not(refused.status, 0, 'prune refuses while an image\'s metadata is unreadable');
  t.match(refused.stderr, /ostree refs --delete ostree\/container\/image\/bad_ZZ_x/, 'and names the way out');
  execFileSync('ostree', ['refs', `--repo=${repo}`, '--delete', 'ostree/container/image/bad_ZZ_x']);
  const p = cli(['image', 'prune', '--repo', repo, '--keep-objects', '--json']);
  t.equal(p.status, 0, `prune: ${p.stderr}`);
  t.equal(prepareRoot(repo, imageRef).status, 0, 'the pulled image is intact');
});
