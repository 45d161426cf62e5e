/**
 * Derived images: our signed base image plus a tar layer (built with createImageWriter, config
 * diff_ids extended) that adds, modifies, deletes through whiteouts and replaces a directory with
 * an opaque marker. The merge commit's tree is checked entry by entry against the base, the
 * layer is stored as a layer commit under its blob ref (whiteouts literal, as ostree-ext), and
 * `ostree fsck` is clean. Also: a non-ostree image (no base), and reuse of a derived layer.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Repo } from '../src/ostree/repo.js';
import { contentChecksum } from '../src/ostree/checksum.js';
import { escapeRef } from '../src/store/refescape.js';
import { pseudoRandomBytes } from '../scripts/lib/sample-tree.js';
import { readLayout, writeTarEntries, type LayerEntry } from './container-helpers.js';
import { cli, ostreeFsck, tmp } from './helpers/tmp.js';
import { buildDerivedImage, commitInfo, newRepo, ostreeCat, refs, run, runJson, signedComposefsRepo, treeMap, type TreeEntry } from './store-helpers.js';

const root = tmp(t, 'ostree-oci-store-derived-');
const src = signedComposefsRepo(root);
const baseDir = join(root, 'base');
run('encapsulate', '--repo', src.repo, 'main', `oci:${baseDir}`, '--max-layers', '3');
const baseLayers = readLayout(baseDir).manifest.layers.length;

const f = (name: string, content: string | Buffer, extra: Partial<LayerEntry> = {}): LayerEntry => ({
  name,
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  data: Buffer.isBuffer(content) ? content : Buffer.from(content),
  ...extra,
});
const dir = (name: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({ name, type: 'directory', mode: 0o755, uid: 0, gid: 0, data: Buffer.alloc(0), ...extra });
const big = pseudoRandomBytes(3 * 1048576 + 17, 4242);

const layerEntries: LayerEntry[] = [
  dir('etc/'),
  f('etc/added.conf', 'added\n'),
  f('etc/hostname', ''),
  f('usr/bin/hello', '#!/bin/sh\necho modified\n', { mode: 0o755 }),
  f('usr/share/doc/.wh.README', ''),
  f('usr/share/.wh.empty-dir', ''),
  f('usr/share/.wh.does-not-exist', ''),
  dir('usr/share/deep/', { mode: 0o711 }),
  f('usr/share/deep/.wh..wh..opq', ''),
  f('usr/share/deep/new-only', 'fresh\n'),
  dir('usr/share/newdir/', { mode: 0o700, uid: 1000, gid: 1000, pax: { 'SCHILY.xattr.user.newattr': 'nv' } }),
  f('usr/share/newdir/file', 'x\n', { uid: 1000, gid: 1000, pax: { 'SCHILY.xattr.user.fattr': 'fv' } }),
  { name: 'usr/bin/hello-link', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: 'hello', data: Buffer.alloc(0) },
  { name: 'usr/bin/hello2', type: 'link', mode: 0o755, uid: 0, gid: 0, linkname: 'usr/bin/hello', data: Buffer.alloc(0) },
  { name: 'usr/bin/xattr-hard', type: 'link', mode: 0o644, uid: 0, gid: 0, linkname: '/usr/share/xattr-file', data: Buffer.alloc(0) },
  f('usr/lib/big2.bin', big),
  f('./var/lib/app/data', 'state\n'),
  f('opt/foo', 'dropped\n'),
  f('run/x', 'dropped\n'),
  dir('tmp/', { mode: 0o1777 }),
  f('tmp/junk', 'dropped\n'),
];
const layerTar = writeTarEntries(layerEntries);

interface Pull {
  commit: string;
  baseCommit: string | null;
  mode: string;
  derivedLayers: number;
  layersFetched: number;
  layers: Array<{ role: string; action: string; commit: string; ref: string; digest: string }>;
  filtered: Record<string, number>;
  removedFiles: string[];
  notes: string[];
  composefsAnnotation: string | null;
}

t.test('derived image → merge commit with the expected tree', async (t) => {
  const derivedDir = join(root, 'derived');
  await buildDerivedImage(`oci:${baseDir}`, `oci:${derivedDir}`, [layerTar], { annotations: { 'containers.composefs-digest': 'ab'.repeat(32) } });
  const dl = readLayout(derivedDir);
  t.equal(dl.manifest.layers.length, baseLayers + 1);
  t.equal(dl.config.config?.Labels?.['ostree.final-diffid'], readLayout(baseDir).config.config?.Labels?.['ostree.final-diffid']);

  const repo = newRepo(join(root, 'dst'));
  const imgref = `oci:${derivedDir}`;
  const imageRef = `ostree/container/image/${escapeRef(imgref)}`;
  const r = runJson<Pull>('image', 'pull', '--repo', repo, imgref);
  t.match(r.notes.join('\n'), /derived \(non-ostree\) layer\(s\)[\s\S]*which no signature covers[\s\S]*does not cover it[\s\S]*composefs annotation containers\.composefs-digest \(abab/, 'output says the base signature does not cover it');
  const text = run('image', 'pull', '--repo', repo, imgref);
  t.match(text, /already present[\s\S]*note: the image has 1 derived \(non-ostree\) layer\(s\)[\s\S]*does not cover it/, 'also in the text output');
  t.equal(r.mode, 'merge');
  t.equal(r.derivedLayers, 1);
  t.equal(r.baseCommit, src.commit);
  t.equal(r.composefsAnnotation, 'ab'.repeat(32));
  t.equal(refs(repo)[imageRef], r.commit);
  const m = commitInfo(repo, imageRef);
  t.equal(m.commit.parent, src.commit, 'parent = base');
  t.ok(commitInfo(repo, src.commit).commitmeta, 'base commitmeta kept');
  t.same(r.filtered, { opt: 1, x: 1, junk: 1 }, 'filtered like ostree-ext (child name for run/tmp, top-level otherwise)');
  t.same(r.removedFiles, ['/usr/etc/hostname'], 'empty hostname removed');

  const base = treeMap(src.repo, src.commit);
  const got = treeMap(repo, imageRef);
  const file = (p: string): TreeEntry | undefined => got.get(p);
  const csum = (p: string): string => file(p)!.checksum;
  const h = Repo.open(repo);
  t.teardown(() => h.close());
  const header = (p: string) => h.readFile(csum(p)).header;

  // Added / modified
  t.equal(ostreeCat(repo, imageRef, '/usr/etc/added.conf').toString(), 'added\n', 'etc → usr/etc');
  t.equal(ostreeCat(repo, imageRef, '/usr/bin/hello').toString(), '#!/bin/sh\necho modified\n');
  t.equal(header('/usr/bin/hello').mode, 0o100755);
  t.equal(csum('/usr/bin/hello2'), csum('/usr/bin/hello'), 'hardlink in the same layer');
  t.equal(csum('/usr/bin/xattr-hard'), base.get('/usr/share/xattr-file')!.checksum, 'hardlink to a lower layer file');
  t.equal(csum('/usr/bin/hello-hardlink'), base.get('/usr/bin/hello-hardlink')!.checksum, 'the base hardlink keeps the old content');
  t.equal(header('/usr/bin/hello-link').symlinkTarget, 'hello');
  t.ok(ostreeCat(repo, imageRef, '/usr/lib/big2.bin').equals(big), 'large file (spooled) intact');
  t.equal(
    csum('/usr/lib/big2.bin'),
    contentChecksum({ uid: 0, gid: 0, mode: 0o100644, rdev: 0, symlinkTarget: '', xattrs: [] }, big),
    'checksum computed from header + bytes',
  );
  t.equal(ostreeCat(repo, imageRef, '/var/lib/app/data').toString(), 'state\n', 'var kept');
  const nf = header('/usr/share/newdir/file');
  t.equal(nf.uid, 1000);
  t.same(nf.xattrs.map((x) => [x.name.toString(), x.value.toString()]), [['user.fattr', 'fv']], 'PAX xattrs on files');
  const nd = h.loadDirMeta(file('/usr/share/newdir')!.meta!);
  t.same([nd.uid, nd.gid, nd.mode], [1000, 1000, 0o40700], 'new directory takes the layer metadata');
  t.same(nd.xattrs.map((x) => [x.name.toString(), x.value.toString()]), [['user.newattr', 'nv']]);
  t.equal(file('/usr/etc')!.meta, base.get('/usr/etc')!.meta, 'existing directory keeps its metadata');
  // Deleted
  t.notOk(file('/usr/share/doc/README'), '.wh.README removed README');
  t.equal(file('/usr/share/doc')?.kind, 'dir', 'its directory stays');
  t.notOk(file('/usr/share/empty-dir'), '.wh. removed a directory');
  t.notOk(file('/usr/etc/hostname'));
  // Opaque directory: only the layer's content, the layer's metadata
  t.same([...got.keys()].filter((p) => p.startsWith('/usr/share/deep/')), ['/usr/share/deep/new-only']);
  t.equal(h.loadDirMeta(file('/usr/share/deep')!.meta!).mode, 0o40711);
  // Filtered
  t.notOk(file('/opt'));
  t.notOk(file('/run'));
  t.equal(file('/tmp')?.kind, 'dir', 'tmp kept as a directory');
  t.notOk(file('/tmp/junk'));
  t.notOk([...got.keys()].some((p) => p.includes('.wh.')), 'no whiteout file in the merged tree');

  // Every other base entry unchanged.
  const touched = (p: string): boolean =>
    p === '/' ||
    ['/usr', '/usr/bin', '/usr/etc', '/usr/share', '/usr/share/doc', '/usr/lib', '/var'].includes(p) ||
    p === '/usr/bin/hello' ||
    p === '/usr/share/doc/README' ||
    p === '/usr/etc/hostname' ||
    p.startsWith('/usr/share/empty-dir') ||
    p.startsWith('/usr/share/deep');
  let same = 0;
  for (const [p, e] of base) {
    if (touched(p)) continue;
    t.same(got.get(p), e, `unchanged: ${p}`);
    same++;
  }
  t.ok(same > 20, `${same} base entries unchanged`);
  const added = [...got.keys()].filter((p) => !base.has(p)).sort();
  t.same(added, [
    '/tmp',
    '/usr/bin/hello-link',
    '/usr/bin/hello2',
    '/usr/bin/xattr-hard',
    '/usr/etc/added.conf',
    '/usr/lib/big2.bin',
    '/usr/share/deep/new-only',
    '/usr/share/newdir',
    '/usr/share/newdir/file',
    '/var/lib',
    '/var/lib/app',
    '/var/lib/app/data',
  ]);

  // The derived layer's own commit keeps whiteouts literally (ostree-ext's layout).
  const dlayer = r.layers[r.layers.length - 1]!;
  t.equal(dlayer.role, 'derived');
  const lt = treeMap(repo, dlayer.commit);
  t.ok(lt.has('/usr/share/doc/.wh.README') && lt.has('/usr/share/deep/.wh..wh..opq'), 'layer commit has the whiteout files');
  t.notOk(lt.has('/opt/foo'));
  t.equal(refs(repo)[dlayer.ref], dlayer.commit);
  t.match(ostreeFsck(repo), /no errors/);

  // The real ostree CLI sees the same tree.
  const ls = execFileSync('ostree', ['ls', '-R', `--repo=${repo}`, imageRef, '/usr/share/deep', '/usr/share/newdir'], { encoding: 'utf8' });
  t.match(ls, /^d00711 0 0\s+0 \/usr\/share\/deep\n-00644 0 0\s+6 \/usr\/share\/deep\/new-only\nd00700 1000 1000\s+0 \/usr\/share\/newdir\n-00644 1000 1000\s+2 \/usr\/share\/newdir\/file\n$/);
});

t.test('a second derived image on the same base reuses every ostree layer', async (t) => {
  const repo = newRepo(join(root, 'dst2'));
  const d1 = join(root, 'derived-a');
  const d2 = join(root, 'derived-b');
  const extra = writeTarEntries([f('usr/share/doc/more', 'more\n')]);
  await buildDerivedImage(`oci:${baseDir}`, `oci:${d1}`, [layerTar]);
  await buildDerivedImage(`oci:${baseDir}`, `oci:${d2}`, [layerTar, extra]);
  const a = runJson<Pull>('image', 'pull', '--repo', repo, `oci:${d1}`);
  const b = runJson<Pull>('image', 'pull', '--repo', repo, `oci:${d2}`);
  t.equal(a.layersFetched, baseLayers + 1);
  t.equal(b.layersFetched, 1, 'only the new layer');
  t.same(
    b.layers.map((l) => l.action),
    [...Array(baseLayers + 1).fill('reused'), 'fetched'],
  );
  t.equal(ostreeCat(repo, b.commit, '/usr/share/doc/more').toString(), 'more\n');
  t.equal(ostreeCat(repo, b.commit, '/usr/bin/hello').toString(), '#!/bin/sh\necho modified\n', 'reused derived layer applied');
  t.match(ostreeFsck(repo), /no errors/);
});

t.test('a non-ostree image: all layers derived, no base, no path filter', async (t) => {
  const dir1 = join(root, 'plain');
  const l1 = writeTarEntries([f('opt/app/bin', 'app\n', { mode: 0o755 }), f('etc/app.conf', 'c\n'), f('usr/lib/x', 'x\n')]);
  const l2 = writeTarEntries([f('opt/app/.wh.bin', ''), f('opt/app/bin2', 'app2\n')]);
  await buildDerivedImage(`oci:${baseDir}`, `oci:${dir1}`, [l1, l2], { baseLayers: false, dropOstreeLabels: true });
  const repo = newRepo(join(root, 'dst3'));
  const r = runJson<Pull>('image', 'pull', '--repo', repo, `oci:${dir1}`);
  t.equal(r.baseCommit, null);
  t.equal(r.derivedLayers, 2);
  const m = commitInfo(repo, r.commit);
  t.equal(m.commit.parent, null);
  const tree = [...treeMap(repo, r.commit).keys()].sort();
  t.same(tree, ['/', '/opt', '/opt/app', '/opt/app/bin2', '/usr', '/usr/etc', '/usr/etc/app.conf', '/usr/lib', '/usr/lib/x']);
  t.match(ostreeFsck(repo), /no errors/);
});

t.test('a bare-user-only repository: derived files it cannot store are refused, nothing written', async (t) => {
  const plain = writeTarEntries([f('opt/app/bin', 'app\n', { mode: 0o755 }), f('usr/lib/x', 'x\n')]);
  const ok = join(root, 'buo-ok');
  await buildDerivedImage(`oci:${baseDir}`, `oci:${ok}`, [plain], { baseLayers: false, dropOstreeLabels: true });
  const repo = newRepo(join(root, 'dst-buo'), 'bare-user-only');
  t.equal(runJson<Pull>('image', 'pull', '--repo', repo, `oci:${ok}`).derivedLayers, 1, 'plain root-owned files: pulled');
  const before = refs(repo);
  const cases: Array<[string, LayerEntry, RegExp]> = [
    ['owner', f('usr/lib/owned', 'o\n', { uid: 1000, gid: 1000 }), /usr\/lib\/owned: has owner 1000:1000, which a bare-user-only repository .* cannot store/],
    ['xattr', f('usr/lib/tagged', 't\n', { pax: { 'SCHILY.xattr.user.foo': 'bar' } }), /usr\/lib\/tagged: has xattrs \(user\.foo\)/],
    ['setuid', f('usr/bin/su2', 's\n', { mode: 0o4755 }), /usr\/bin\/su2: has mode bits 04000/],
  ];
  for (const [name, entry, re] of cases) {
    const img = join(root, `buo-${name}`);
    await buildDerivedImage(`oci:${baseDir}`, `oci:${img}`, [writeTarEntries([f('usr/lib/fine', 'fine\n'), entry])], { baseLayers: false, dropOstreeLabels: true });
    const r = cli(['image', 'pull', '--repo', repo, `oci:${img}`]);
    t.equal(r.status, 1, `${name}: refused`);
    t.match(r.stderr, re, `${name}: names the file and what cannot be stored`);
    t.same(refs(repo), before, `${name}: no ref written`);
    t.match(ostreeFsck(repo), /no errors/, `${name}: fsck clean`);
  }
});

t.test('modified hardlinks into the object store (ostree-ext #405): the first link becomes the file, later links share it', async (t) => {
  // What a container build writes when it changes a file of the base: the object under
  // sysroot/ostree/repo/objects with a new mtime, its checkout paths as hardlinks to it.
  const obj = `sysroot/ostree/repo/objects/60/${'fe'.repeat(31)}.file`;
  const other = `sysroot/ostree/repo/objects/aa/${'bb'.repeat(31)}.file`;
  const T = 1700000000;
  const link = (name: string, target: string): LayerEntry => ({ name, type: 'link', mode: 0o644, uid: 0, gid: 0, linkname: target, data: Buffer.alloc(0), mtime: T });
  const layer = writeTarEntries([
    f(obj, 'hello\n', { mode: 0o755, mtime: T }),
    link('usr/bin/first', obj),
    link('usr/bin/second', obj),
    link('etc/third', obj),
    link('usr/bin/stale', other), // a modified link to an object the layer does not carry: dropped
  ]);
  const img = join(root, 'sysroot-links');
  await buildDerivedImage(`oci:${baseDir}`, `oci:${img}`, [layer]);
  const repo = newRepo(join(root, 'dst-sysroot-links'));
  const r = runJson<Pull>('image', 'pull', '--repo', repo, `oci:${img}`);
  t.same(r.filtered, { sysroot: 1 }, 'the link to an object not in the layer is dropped, counted under sysroot');
  for (const p of ['/usr/bin/first', '/usr/bin/second', '/usr/etc/third']) t.equal(ostreeCat(repo, r.commit, p).toString(), 'hello\n', `${p}: the modified content`);
  const tree = treeMap(repo, r.commit);
  t.equal(tree.get('/usr/bin/first')?.checksum, contentChecksum({ uid: 0, gid: 0, mode: 0o100755, rdev: 0, symlinkTarget: '', xattrs: [] }, Buffer.from('hello\n')), 'with the object entry\'s header (mode 0755)');
  t.equal(tree.get('/usr/bin/second')?.checksum, tree.get('/usr/bin/first')?.checksum, 'later links: the same object');
  t.notOk(tree.has('/usr/bin/stale'));
  t.notOk([...tree.keys()].some((k) => k.startsWith('/sysroot/ostree/repo/objects')), 'the object-store entry itself is not placed');
  t.match(ostreeFsck(repo), /no errors/);
});
