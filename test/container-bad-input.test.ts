/**
 * unencapsulate refuses bad images with an error naming the object/path/blob, exit status ≠ 0,
 * and leaves the destination repository untouched: no ref, no objects, `ostree fsck` clean.
 * Layers are edited with the rewriter in container-helpers.ts, which recomputes blob digests,
 * sizes and diffids so that the OCI-level checks pass and the ostree-level ones must catch it.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { ObjectType, Repo } from '../src/ostree/repo.js';
import { serializeDirMeta } from '../src/gvariant/ostree-types.js';
import { contentChecksum } from '../src/ostree/checksum.js';
import { ostreeInit } from '../scripts/lib/sample-tree.js';
import {
  blobPath,
  countObjects,
  makeSampleRepo,
  readLayerTar,
  readLayout,
  readTarEntries,
  replaceLayerTar,
  rewriteLayer,
  stagedFiles,
  writeConfigAndManifest,
  type LayerEntry,
  type SampleRepo,
} from './container-helpers.js';
import { cli, fixture, ostreeFsck, tmp } from './helpers/tmp.js';

const root = tmp(t, 'ostree-oci-bad-');
const single = join(root, 'single');
const multi = join(root, 'multi');
let s!: SampleRepo;
let walk: ReturnType<Repo['walk']> extends Iterable<infer W> ? W[] : never = [];
let README = '';
const fileCsum = (p: string): string => {
  const e = walk.find((w) => w.kind === 'file' && w.path === p);
  if (!e || e.kind !== 'file') throw new Error(`no file ${p}`);
  return e.checksum;
};
const dirTree = (p: string): string => {
  const e = walk.find((w) => w.kind === 'dir' && w.path === p);
  if (!e || e.kind !== 'dir') throw new Error(`no dir ${p}`);
  return e.tree;
};
const objPath = (c: string, ext: string): string => `sysroot/ostree/repo/objects/${c.slice(0, 2)}/${c.slice(2)}.${ext}`;

fixture(t, 'sample repo encapsulated into a single- and a 4-layer image', () => {
  s = makeSampleRepo(root);
  for (const [dir, extra] of [[single, []], [multi, ['--max-layers', '4']]] as const) {
    const r = cli(['encapsulate', '--repo', s.repo, 'main', `oci:${dir}`, ...extra]);
    if (r.status !== 0) throw new Error(`encapsulate ${dir} ${extra.join(' ')}: exit ${r.status}: ${r.stderr}`);
  }
  const src = Repo.open(s.repo);
  walk = [...src.walk(s.commit)];
  src.close();
  README = fileCsum('/usr/share/doc/README');
});

let n = 0;
/** A fresh copy of `base` for one case. */
function copyOf(base: string): string {
  const dir = join(root, `case-${n++}`);
  execFileSync('cp', ['-a', base, dir]);
  return dir;
}

/** Unencapsulate `imgref` into a fresh repo; expect failure matching `pattern`, and no trace. */
function expectRejected(t: Parameters<Parameters<typeof t.test>[1]>[0], imgref: string, pattern: RegExp, extra: string[] = []): void {
  const dst = join(root, `dst-${n++}`);
  ostreeInit(dst, 'bare-user');
  const r = cli(['unencapsulate', '--repo', dst, imgref, '--ref', 'imported', ...extra]);
  t.not(r.status, 0, 'exit status ≠ 0');
  t.match(r.stderr, pattern, 'error names what failed');
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  t.equal(execFileSync('ostree', ['refs', `--repo=${dst}`], { encoding: 'utf8' }), '', 'no ref written');
  t.equal(countObjects(dst), 0, 'no objects left behind');
  t.equal(stagedFiles(dst), 0, 'nothing left staged for the next transaction to publish');
  t.match(ostreeFsck(dst), /completed successfully|no errors/, 'ostree fsck clean');
}

t.test('sanity: the unmodified images import', async (t) => {
  for (const dir of [single, multi]) {
    const dst = join(root, `ok-${n++}`);
    ostreeInit(dst, 'bare-user');
    const r = cli(['unencapsulate', '--repo', dst, `oci:${dir}`]);
    t.equal(r.status, 0, r.stderr);
    t.equal(r.stdout.trim(), s.commit);
  }
});

t.test('an object whose bytes do not match its name', async (t) => {
  const dir = copyOf(single);
  await rewriteLayer(dir, 0, (es) => {
    const e = es.find((x) => x.name === objPath(README, 'file'))!;
    e.data = Buffer.from(e.data.toString().replace('This is', 'THIS is'));
  });
  expectRejected(t, `oci:${dir}`, new RegExp(`file object checksum mismatch at layer 0 .*: ${objPath(README, 'file')}: expected ${README}, got [0-9a-f]{64}`));

  const tree = dirTree('/usr/share/doc');
  const dir2 = copyOf(single);
  await rewriteLayer(dir2, 0, (es) => {
    const e = es.find((x) => x.name === objPath(tree, 'dirtree'))!;
    e.data = Buffer.from(e.data.toString('latin1').replace('README', 'README'.toLowerCase()), 'latin1');
  });
  expectRejected(t, `oci:${dir2}`, new RegExp(`dirtree object checksum mismatch at .*${objPath(tree, 'dirtree')}: expected ${tree}`));

  // The same with a content object in a chunk layer of the multi-layer image.
  const dir3 = copyOf(multi);
  const layers = readLayout(dir3).manifest.layers.length;
  let changed = -1;
  for (let i = 1; i < layers && changed < 0; i++) {
    const es = await readTarEntries(readLayerTar(dir3, i));
    const e = es.find((x) => x.name.endsWith('.file') && x.type === 'file' && x.data.length > 0);
    if (!e) continue;
    e.data = Buffer.from(e.data);
    e.data[0] = e.data[0]! ^ 0xff;
    const { writeTarEntries } = await import('./container-helpers.js');
    replaceLayerTar(dir3, i, writeTarEntries(es));
    changed = i;
  }
  t.ok(changed > 0);
  expectRejected(t, `oci:${dir3}`, new RegExp(`file object checksum mismatch at layer ${changed} `));
});

t.test('a blob whose digest does not match its descriptor', async (t) => {
  const dir = copyOf(multi);
  const d = readLayout(dir).manifest.layers[1]!;
  const bytes = readFileSync(blobPath(dir, d.digest));
  bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 1; // same size, other bytes
  writeFileSync(blobPath(dir, d.digest), bytes);
  expectRejected(t, `oci:${dir}`, new RegExp(`layer 1 blob ${d.digest} .*digest mismatch: expected ${d.digest}, got sha256:`));
});

t.test('a diffid mismatch', async (t) => {
  const dir = copyOf(multi);
  const v = readLayout(dir);
  t.ok(v.manifest.layers.length >= 3);
  const wrong = `sha256:${'ab'.repeat(32)}`;
  v.config.rootfs.diff_ids[1] = wrong;
  writeConfigAndManifest(dir, v);
  expectRejected(t, `oci:${dir}`, new RegExp(`layer 1 \\(${v.manifest.layers[1]!.digest}\\): diffid mismatch: config rootfs.diff_ids\\[1\\] is ${wrong}`));
});

t.test('a truncated layer', async (t) => {
  // Cut inside the README object's data, then re-pack with matching digests and diffid.
  const dir = copyOf(single);
  const tarBytes = readLayerTar(dir, 0);
  const needle = Buffer.from('This is the ostree-oci sample tree');
  const at = tarBytes.indexOf(needle);
  t.ok(at > 0);
  replaceLayerTar(dir, 0, tarBytes.subarray(0, at + 5));
  expectRejected(t, `oci:${dir}`, new RegExp(`layer 0 .*truncated tar stream.*${objPath(README, 'file').replace(/\//g, '\\/')}`));

  // A truncated compressed blob whose descriptor was updated to match: decompression fails.
  const dir2 = copyOf(single);
  const v = readLayout(dir2);
  const blob = readFileSync(blobPath(dir2, v.manifest.layers[0]!.digest));
  const cut = blob.subarray(0, Math.floor(blob.length / 2));
  const digest = `sha256:${execFileSync('sha256sum', { input: cut, encoding: 'utf8' }).slice(0, 64)}`;
  writeFileSync(blobPath(dir2, digest), cut);
  v.manifest.layers[0] = { ...v.manifest.layers[0]!, digest, size: cut.length };
  writeConfigAndManifest(dir2, v);
  expectRejected(t, `oci:${dir2}`, /layer 0 .*(gzip decompression failed|unexpected end of file)/);
});

t.test('a missing dirtree / content object', async (t) => {
  const tree = dirTree('/usr/share/deep/a/b');
  const dir = copyOf(single);
  await rewriteLayer(dir, 0, (es) => es.filter((e) => e.name !== objPath(tree, 'dirtree')));
  expectRejected(t, `oci:${dir}`, new RegExp(`dirtree object ${tree} \\(/usr/share/deep/a/b\\) of commit ${s.commit} is missing`));

  // The object, its xattrs and its checkout hardlink all gone.
  const dir2 = copyOf(single);
  await rewriteLayer(dir2, 0, (es) => es.filter((e) => !e.name.includes(README.slice(2)) && e.linkname !== objPath(README, 'file')));
  expectRejected(t, `oci:${dir2}`, new RegExp(`file object ${README} \\(/usr/share/doc/README\\) of commit ${s.commit} is missing`));
});

t.test('path traversal', async (t) => {
  const cases: Array<[string, (es: LayerEntry[]) => void, RegExp]> = [
    ['../ in a name', (es) => void (es.find((e) => e.name === 'usr/bin/hello')!.name = '../escape'), /path "\.\.\/escape" contains "\.\." \(path traversal\)/],
    ['absolute name', (es) => void (es.find((e) => e.name === 'usr/bin/hello')!.name = '/etc/evil'), /absolute path "\/etc\/evil" is not allowed \(path traversal\)/],
    [
      '../ in a hardlink target',
      (es) => void (es.find((e) => e.name === 'usr/bin/hello')!.linkname = '../../etc/shadow'),
      /hardlink target of usr\/bin\/hello "\.\.\/\.\.\/etc\/shadow" contains "\.\."/,
    ],
    ['../ inside the object store', (es) => void (es.find((e) => e.name === objPath(README, 'file'))!.name = `sysroot/ostree/repo/objects/../../../x`), /contains "\.\." \(path traversal\)/],
  ];
  for (const [what, edit, pattern] of cases) {
    const dir = copyOf(single);
    await rewriteLayer(dir, 0, edit);
    t.test(what, async (t) => expectRejected(t, `oci:${dir}`, pattern));
  }
});

t.test('a hardlink to an object that is not in the stream', async (t) => {
  const ghost = 'ab' + 'c'.repeat(62);
  const dir = copyOf(single);
  await rewriteLayer(dir, 0, (es) => {
    es.splice(es.length - 1, 0, { name: 'usr/bin/extra', type: 'link', mode: 0o755, uid: 0, gid: 0, linkname: objPath(ghost, 'file'), data: Buffer.alloc(0) });
  });
  expectRejected(t, `oci:${dir}`, new RegExp(`hardlink usr/bin/extra → ${objPath(ghost, 'file')}: the target is not in this layer's stream`));
  // The object exists, but only in another layer: still refused (a layer must be self-contained).
  const dir2 = copyOf(multi);
  const l0 = await readTarEntries(readLayerTar(dir2, 0));
  const chunkObj = (await readTarEntries(readLayerTar(dir2, 1))).find((e) => e.name.endsWith('.file'))!;
  l0.push({ name: 'usr/bin/crosslayer', type: 'link', mode: 0o644, uid: 0, gid: 0, linkname: chunkObj.name, data: Buffer.alloc(0) });
  const { writeTarEntries } = await import('./container-helpers.js');
  replaceLayerTar(dir2, 0, writeTarEntries(l0));
  expectRejected(t, `oci:${dir2}`, /hardlink usr\/bin\/crosslayer → .*: the target is not in this layer's stream/);
});

t.test('a .commitmeta for another commit', async (t) => {
  const other = 'ef'.repeat(32);
  const dir = copyOf(single);
  await rewriteLayer(dir, 0, (es) => void (es.find((e) => e.name.endsWith('.commitmeta'))!.name = objPath(other, 'commitmeta')));
  expectRejected(t, `oci:${dir}`, new RegExp(`\\.commitmeta is for commit ${other}, but the image's commit is ${s.commit}`));
  // A .commitmeta anywhere but right after the commit is refused too.
  const dir2 = copyOf(single);
  await rewriteLayer(dir2, 0, (es) => {
    const i = es.findIndex((e) => e.name.endsWith('.commitmeta'));
    const [cm] = es.splice(i, 1);
    es.splice(es.length - 3, 0, cm!);
  });
  expectRejected(t, `oci:${dir2}`, /a \.commitmeta must directly follow its \.commit object/);
});

t.test('an object the commit does not reference', async (t) => {
  const header = { uid: 0, gid: 0, mode: 0o100644, rdev: 0, symlinkTarget: '', xattrs: [] };
  const payload = Buffer.from('smuggled\n');
  const c = contentChecksum(header, payload);
  const dir = copyOf(single);
  await rewriteLayer(dir, 0, (es) => {
    es.splice(
      es.length - 1,
      0,
      { name: objPath(c, 'file-xattrs-link'), type: 'file', mode: 0o644, uid: 0, gid: 0, data: Buffer.alloc(0) },
      { name: objPath(c, 'file'), type: 'file', mode: 0o644, uid: 0, gid: 0, data: payload },
    );
  });
  expectRejected(t, `oci:${dir}`, new RegExp(`file object ${c} in the image is not referenced by commit ${s.commit}`));
});

t.test('commit verification options and image labels', async (t) => {
  expectRejected(t, `oci:${single}`, new RegExp(`label ostree.commit is ${s.commit}, expected ${'0'.repeat(64)}`), ['--verify-commit', '0'.repeat(64)]);

  const noMeta = copyOf(single);
  await rewriteLayer(noMeta, 0, (es) => es.filter((e) => !e.name.endsWith('.commitmeta')));
  expectRejected(t, `oci:${noMeta}`, new RegExp(`commit ${s.commit} has no \\.commitmeta in the image`), ['--require-commitmeta']);

  const badLabel = copyOf(single);
  const v = readLayout(badLabel);
  v.config.config!.Labels!['ostree.commit'] = '12'.repeat(32);
  writeConfigAndManifest(badLabel, v);
  expectRejected(t, `oci:${badLabel}`, new RegExp(`label ostree.commit is ${'12'.repeat(32)}, but the commit layer holds ${s.commit}`));

  const plain = copyOf(single);
  const v2 = readLayout(plain);
  delete v2.config.config!.Labels!['ostree.final-diffid'];
  writeConfigAndManifest(plain, v2);
  expectRejected(t, `oci:${plain}`, /no ostree\.final-diffid label found, not an ostree encapsulated container/);

  // A derived (non-ostree) layer after the ostree ones.
  const derived = copyOf(single);
  const v3 = readLayout(derived);
  const layerTar = Buffer.alloc(1024);
  const gz = zlib.gzipSync(layerTar);
  const digest = `sha256:${execFileSync('sha256sum', { input: gz, encoding: 'utf8' }).slice(0, 64)}`;
  writeFileSync(blobPath(derived, digest), gz);
  v3.manifest.layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: gz.length });
  v3.config.rootfs.diff_ids.push(`sha256:${execFileSync('sha256sum', { input: layerTar, encoding: 'utf8' }).slice(0, 64)}`);
  writeConfigAndManifest(derived, v3);
  expectRejected(t, `oci:${derived}`, /image has 1 non-ostree layers/);
});

t.test('--ref is checked before anything is imported', async (t) => {
  const dst = join(root, `dst-${n++}`);
  ostreeInit(dst, 'bare-user');
  mkdirSync(join(dst, 'tree'));
  writeFileSync(join(dst, 'tree', 'f'), 'x');
  execFileSync('ostree', ['commit', `--repo=${dst}`, '-b', 'a/b', join(dst, 'tree')]);
  rmSync(join(dst, 'tree'), { recursive: true });
  const objects = countObjects(dst);
  const cases: Array<[string, RegExp]> = [
    ['bad ref', /invalid ref name "bad ref"/],
    ['../escape', /invalid ref name/],
    ['/abs', /invalid ref name/],
    ['x/', /invalid ref name/],
    ['', /invalid ref name ""/],
    ['remote:foo', /invalid ref name "remote:foo"/],
    ['a', /cannot create ref a in .*: refs exist below it/],
    ['a/b/c', /cannot create ref a\/b\/c in .*: ref a\/b exists/],
  ];
  for (const [ref, why] of cases) {
    const r = cli(['unencapsulate', '--repo', dst, `oci:${single}`, '--ref', ref]);
    t.equal(r.status, 2, `--ref ${JSON.stringify(ref)}: usage error`);
    t.match(r.stderr, why, `--ref ${JSON.stringify(ref)}: says why`);
  }
  t.equal(countObjects(dst), objects, 'no object imported');
  t.equal(stagedFiles(dst), 0, 'nothing staged');
  t.equal(execFileSync('ostree', ['refs', `--repo=${dst}`], { encoding: 'utf8' }), 'a/b\n', 'refs unchanged');
  const ok = cli(['unencapsulate', '--repo', dst, `oci:${single}`, '--ref', 'a/c']);
  t.equal(ok.status, 0, `a ref beside an existing one works: ${ok.stderr}`);
});

t.test('a bare-user-only repository: objects it cannot store are refused, canonical ones import', async (t) => {
  const dst = join(root, `dst-${n++}`);
  ostreeInit(dst, 'bare-user-only');
  // The sample tree has xattrs and a setuid file: libostree would store them stripped, under
  // checksums `ostree fsck` then reports corrupt.
  const r = cli(['unencapsulate', '--repo', dst, `oci:${single}`, '--ref', 'x']);
  t.equal(r.status, 1, 'refused');
  t.match(r.stderr, /file object [0-9a-f]{64} has .*(xattrs|mode bits).*, which a bare-user-only repository .* cannot store; import into a bare-user repository/);
  t.equal(countObjects(dst), 0, 'no objects');
  t.equal(stagedFiles(dst), 0, 'nothing staged');
  const canon = join(root, `canon-${n++}`);
  const tree = join(canon, 'tree');
  mkdirSync(join(tree, 'usr', 'bin'), { recursive: true });
  writeFileSync(join(tree, 'usr', 'bin', 'tool'), 'x'.repeat(5000));
  ostreeInit(join(canon, 'repo'), 'bare-user');
  // Only an xattr (owner root, mode 0644): libostree itself accepted this one.
  execFileSync('setfattr', ['-n', 'user.note', '-v', 'kept', join(tree, 'usr', 'bin', 'tool')]);
  execFileSync('ostree', ['commit', `--repo=${join(canon, 'repo')}`, '-b', 'xattr', `--tree=dir=${tree}`]);
  t.equal(cli(['encapsulate', '--repo', join(canon, 'repo'), 'xattr', `oci:${join(canon, 'xattr-img')}`]).status, 0);
  const x = cli(['unencapsulate', '--repo', dst, `oci:${join(canon, 'xattr-img')}`]);
  t.equal(x.status, 1, 'xattrs only: refused');
  t.match(x.stderr, /has xattrs \(user\.note\), which a bare-user-only repository/);
  t.equal(countObjects(dst), 0, 'no objects');
  execFileSync('setfattr', ['-x', 'user.note', join(tree, 'usr', 'bin', 'tool')]);
  // The tree committed with canonical permissions and no xattrs imports and fscks clean.
  execFileSync('ostree', ['commit', `--repo=${join(canon, 'repo')}`, '-b', 'main', '--canonical-permissions', `--tree=dir=${tree}`]);
  const enc = cli(['encapsulate', '--repo', join(canon, 'repo'), 'main', `oci:${join(canon, 'img')}`]);
  t.equal(enc.status, 0, enc.stderr);
  const ok = cli(['unencapsulate', '--repo', dst, `oci:${join(canon, 'img')}`, '--ref', 'x']);
  t.equal(ok.status, 0, `canonical commit imports: ${ok.stderr}`);
  t.match(ostreeFsck(dst), /completed successfully|no errors/, 'ostree fsck clean');
});

t.test('objects another transaction left staged are not published by ours', async (t) => {
  const dst = join(root, `dst-${n++}`);
  ostreeInit(dst, 'bare-user');
  // An aborted transaction (as an interrupted pull leaves it): libostree keeps its staging
  // directory and the next transaction resumes into it.
  const repo = Repo.open(dst);
  const stray = serializeDirMeta({ uid: 0, gid: 0, mode: 0o40700, xattrs: [] });
  repo.native.prepareTransaction();
  const strayCsum = repo.native.writeMetadata(ObjectType.DIR_META, null, stray);
  repo.native.abortTransaction();
  repo.close();
  t.equal(stagedFiles(dst), 1, 'libostree left the stray object staged');
  const r = cli(['unencapsulate', '--repo', dst, `oci:${single}`, '--ref', 'imported']);
  t.equal(r.status, 0, r.stderr);
  t.notOk(existsSync(join(dst, 'objects', strayCsum.slice(0, 2), `${strayCsum.slice(2)}.dirmeta`)), 'the stray object was not published with the import');
  t.match(ostreeFsck(dst), /completed successfully|no errors/, 'ostree fsck clean');
});

t.test('a repository that runs out of room mid-import: libostree write error, nothing left behind', async (t) => {
  // A tmpfs with few inodes fails object creation (ENOSPC) after some objects, in whichever
  // libostree write comes next: metadata and small files are written on libuv threads, so this
  // checks that their errors reach the user with the object named and abort the transaction.
  const mnt = join(root, 'tiny');
  execFileSync('mkdir', ['-p', mnt]);
  let mounted = false;
  t.teardown(() => {
    if (mounted) execFileSync('umount', [mnt]);
  });
  for (const inodes of [40, 55, 70]) {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=16m,nr_inodes=${inodes}`, 'tmpfs', mnt]);
    mounted = true;
    const dst = join(mnt, 'repo');
    ostreeInit(dst, 'bare-user');
    try {
      execFileSync('setfattr', ['-n', 'user.probe', '-v', '1', join(dst, 'config')]);
    } catch {
      t.skip(`this kernel's tmpfs has no user.* xattrs (needs Linux ≥ 6.6), which bare-user repositories need`);
      return;
    }
    const r = cli(['unencapsulate', '--repo', dst, `oci:${single}`, '--ref', 'imported']);
    t.not(r.status, 0, `${inodes} inodes: exit status ≠ 0`);
    t.match(
      r.stderr,
      /layer 0 \(sha256:[0-9a-f]{64}\) of oci:.*: sysroot\/ostree\/repo\/objects\/[0-9a-f]{2}\/[0-9a-f]{62}\.(file|dirtree|dirmeta): write (file|dirtree|dirmeta) [0-9a-f]{64}: .*No space left on device/,
      `${inodes} inodes: the error names the object and the cause`,
    );
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
    t.equal(execFileSync('ostree', ['refs', `--repo=${dst}`], { encoding: 'utf8' }), '', 'no ref written');
    t.equal(countObjects(dst), 0, 'no objects left behind');
    t.match(ostreeFsck(dst), /completed successfully|no errors/, 'ostree fsck clean');
    execFileSync('umount', [mnt]);
    mounted = false;
  }
});
