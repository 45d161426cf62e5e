/**
 * Our images against other tools: `skopeo inspect` reads them, `skopeo copy` oci → oci-archive →
 * oci keeps them importable (same commit, same commitmeta), and `umoci unpack --rootless` of our
 * image yields the source tree (content, modes, symlinks, xattrs), plus the
 * `sysroot/ostree/repo` object store the ostree-ext layout carries.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Repo } from '../src/ostree/repo.js';
import { ostreeInit } from '../scripts/lib/sample-tree.js';
import { makeSampleRepo, readLayout } from './container-helpers.js';
import { cli, ostreeFsck, tmp } from './helpers/tmp.js';

const skopeo = (...args: string[]): string => execFileSync('skopeo', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function importAndCheck(t: Tap, dst: string, imgref: string, commit: string, commitmeta: Buffer): void {
  ostreeInit(dst, 'bare-user');
  const r = cli(['unencapsulate', '--repo', dst, imgref, '--ref', 'imported']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), commit, `${imgref}: same commit`);
  const repo = Repo.open(dst);
  try {
    t.ok(repo.readCommitMetaBytes(commit)?.equals(commitmeta), `${imgref}: same commitmeta bytes`);
  } finally {
    repo.close();
  }
  t.match(ostreeFsck(dst), /no errors found/);
}

type Tap = Parameters<Parameters<typeof t.test>[1]>[0];

for (const compression of ['gzip', 'zstd']) {
  t.test(`skopeo inspect and skopeo copy oci → oci-archive → oci (${compression})`, async (t) => {
    const d = tmp(t);
    const s = makeSampleRepo(d);
    const dir = join(d, 'img');
    const enc = cli(['encapsulate', '--repo', s.repo, 'main', `oci:${dir}:v1`, '--compression', compression, '--max-layers', '3']);
    t.equal(enc.status, 0, enc.stderr);
    const v = readLayout(dir);

    const info = JSON.parse(skopeo('inspect', `oci:${dir}:v1`)) as { Digest: string; Labels: Record<string, string>; Layers: string[] };
    t.equal(info.Digest, v.manifestDigest);
    t.equal(info.Labels['ostree.commit'], s.commit);
    t.same(info.Layers, v.manifest.layers.map((l) => l.digest));
    const cfg = JSON.parse(skopeo('inspect', '--config', `oci:${dir}:v1`)) as { rootfs: { diff_ids: string[] } };
    t.same(cfg.rootfs.diff_ids, v.config.rootfs.diff_ids);

    const archive = join(d, 'copy.tar');
    skopeo('copy', '--quiet', `oci:${dir}:v1`, `oci-archive:${archive}:v2`);
    skopeo('copy', '--quiet', `oci-archive:${archive}:v2`, `oci:${join(d, 'copy2')}:v3`);
    t.same(readLayout(join(d, 'copy2')).config.rootfs.diff_ids, v.config.rootfs.diff_ids, 'layers unchanged by skopeo');
    importAndCheck(t, join(d, 'dst1'), `oci-archive:${archive}:v2`, s.commit, s.commitmeta);
    importAndCheck(t, join(d, 'dst2'), `oci:${join(d, 'copy2')}:v3`, s.commit, s.commitmeta);
  });
}

/** Every path below `root` with what it is (type, mode, content hash or link target, user xattrs). */
function describeTree(root: string, mapPath: (rel: string) => string = (p) => p): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    const abs = join(root, rel);
    const st = lstatSync(abs);
    const mode = (st.mode & 0o7777).toString(8);
    let what: string;
    if (st.isDirectory()) what = `dir ${mode}`;
    else if (st.isSymbolicLink()) what = `symlink -> ${readlinkSync(abs)}`;
    else what = `file ${mode} ${createHash('sha256').update(readFileSync(abs)).digest('hex')}`;
    if (!st.isSymbolicLink()) {
      const x = execFileSync('getfattr', ['--absolute-names', '-d', '-m', '^user\\.', abs], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.startsWith('user.'))
        .sort()
        .join(',');
      if (x) what += ` xattrs ${x}`;
    }
    out.set(mapPath(rel), what);
    if (st.isDirectory()) for (const n of readdirSync(abs).sort()) walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return out;
}

t.test('umoci unpack --rootless of our image yields the commit tree', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d);
  const dir = join(d, 'img');
  t.equal(cli(['encapsulate', '--repo', s.repo, 'main', `oci:${dir}:latest`, '--max-layers', '4']).status, 0);
  const bundle = join(d, 'bundle');
  execFileSync('umoci', ['unpack', '--rootless', '--image', `${dir}:latest`, bundle], { stdio: ['ignore', 'ignore', 'pipe'] });
  const rootfs = join(bundle, 'rootfs');
  // The source directory the commit was made from, with usr/etc shown where ostree-ext puts it.
  const want = describeTree(s.tree, (p) => (p === 'usr/etc' || p.startsWith('usr/etc/') ? p.slice(4) : p));
  const got = describeTree(rootfs);
  for (const [p, w] of want) {
    if (p === '') continue; // the bundle's rootfs dir itself is umoci's
    // ostree-ext writes directory entries without xattrs (they live in the dirmeta objects, which
    // the ostree import restores); file xattrs are in PAX records, so the container sees them.
    t.equal(got.get(p), w.startsWith('dir ') ? w.replace(/ xattrs .*$/, '') : w, p);
  }
  t.match(want.get('usr/share/restricted'), /xattrs user\.dirattr/, 'the source has a directory xattr (not in the container view)');
  // Besides the tree: the repository the ostree-ext layout carries, and nothing else.
  const extra = [...got.keys()].filter((p) => p !== '' && !want.has(p) && !p.startsWith('sysroot'));
  t.same(extra, [], 'no other paths');
  t.equal(readFileSync(join(rootfs, 'sysroot/ostree/repo/config'), 'utf8'), '[core]\nrepo_version=1\nmode=bare-split-xattrs\n');
  const c = s.commit;
  t.ok(lstatSync(join(rootfs, 'sysroot/ostree/repo/objects', c.slice(0, 2), `${c.slice(2)}.commit`)).isFile());
  // Checkout files are hardlinks of their objects.
  t.ok(lstatSync(join(rootfs, 'usr/bin/hello')).nlink >= 3, 'hello, hello-hardlink and the object share an inode');
});

t.test('docker:// round trip through a local registry', async (t) => {
  const { startRegistry } = await import('./oci-helpers.js');
  const host = await startRegistry(t);
  const d = tmp(t);
  const s = makeSampleRepo(d);
  const ref = `docker://${host}/ostree-oci/sample:v1`;
  const enc = cli(['encapsulate', '--repo', s.repo, 'main', ref, '--no-tls-verify', '--compression', 'zstd', '--max-layers', '3']);
  t.equal(enc.status, 0, enc.stderr);
  t.match(enc.stdout.trim(), /^sha256:[0-9a-f]{64}$/, 'prints the pushed manifest digest');
  const dst = join(d, 'dst');
  ostreeInit(dst, 'bare-user');
  const byDigest = `docker://${host}/ostree-oci/sample@${enc.stdout.trim()}`;
  const r = cli(['unencapsulate', '--repo', dst, byDigest, '--no-tls-verify', '--require-commitmeta', '--ref', 'imported']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), s.commit);
  const repo = Repo.open(dst);
  t.ok(repo.readCommitMetaBytes(s.commit)?.equals(s.commitmeta), 'commitmeta bytes identical');
  repo.close();
  t.match(ostreeFsck(dst), /no errors found/);
});
