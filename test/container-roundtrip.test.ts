/**
 * encapsulate → unencapsulate round trips through the CLI: the commit checksum and the commitmeta
 * bytes come back identical and `ostree fsck` is clean, for gzip and zstd, single- and
 * multi-layer images, `oci:` and `oci-archive:`. Also the image metadata ostree-ext writes
 * (labels, annotations, history, created, Cmd), re-imports into a repository that already has the
 * objects, and detection of a corrupted stored copy.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { appendFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Repo } from '../src/ostree/repo.js';
import { ObjectType } from '../ostree-bindings/index.js';
import { ostreeInit } from '../scripts/lib/sample-tree.js';
import { makeSampleRepo, readLayout, countObjects, type SampleRepo } from './container-helpers.js';
import { cli, ostreeFsck, tmp } from './helpers/tmp.js';

function checkImported(t: Test, dst: string, s: SampleRepo, ref: string): void {
  const repo = Repo.open(dst);
  try {
    t.equal(repo.resolveRev(ref), s.commit, 'ref points at the source commit');
    t.ok(repo.readCommitMetaBytes(s.commit)?.equals(s.commitmeta), 'commitmeta bytes identical');
  } finally {
    repo.close();
  }
  t.match(ostreeFsck(dst), /no errors found/, 'ostree fsck clean');
}

const CASES = [
  { name: 'gzip, single layer, oci:, 64 MiB file', compression: 'gzip', maxLayers: undefined, transport: 'oci', big: 64 },
  { name: 'zstd, multi-layer, oci-archive:, 64 MiB file', compression: 'zstd', maxLayers: 6, transport: 'oci-archive', big: 64 },
  { name: 'gzip, multi-layer, oci-archive:', compression: 'gzip', maxLayers: 3, transport: 'oci-archive', big: 2 },
  { name: 'zstd, single layer, oci:', compression: 'zstd', maxLayers: undefined, transport: 'oci', big: 2 },
] as const;

for (const c of CASES) {
  t.test(`round trip: ${c.name}`, async (t) => {
    const d = tmp(t);
    const s = makeSampleRepo(d, { bigFileMiB: c.big });
    const imgref = c.transport === 'oci' ? `oci:${join(d, 'img')}:v1` : `oci-archive:${join(d, 'img.tar')}:v1`;
    const args = ['encapsulate', '--repo', s.repo, 'main', imgref, '--compression', c.compression, '-l', 'test.label=hello', '--json'];
    if (c.maxLayers) args.push('--max-layers', String(c.maxLayers));
    const enc = cli(args);
    t.equal(enc.status, 0, enc.stderr);
    const summary = JSON.parse(enc.stdout) as { manifestDigest: string; layers: Array<{ mediaType: string; diffId: string }>; labels: Record<string, string> };
    t.match(summary.manifestDigest, /^sha256:[0-9a-f]{64}$/);
    if (c.maxLayers) {
      t.ok(summary.layers.length > 2 && summary.layers.length <= c.maxLayers + 1, `commit layer + 2…${c.maxLayers} chunks (${summary.layers.length})`);
    } else t.equal(summary.layers.length, 1);
    for (const l of summary.layers) t.match(l.mediaType, c.compression === 'zstd' ? /tar\+zstd$/ : /tar\+gzip$/);
    t.equal(summary.labels['ostree.final-diffid'], summary.layers[summary.layers.length - 1]!.diffId);

    for (const mode of ['bare-user', 'archive']) {
      const dst = join(d, `dst-${mode}`);
      ostreeInit(dst, mode);
      const un = cli(['unencapsulate', '--repo', dst, imgref, '--ref', 'imported', '--require-commitmeta', '--verify-commit', s.commit]);
      t.equal(un.status, 0, un.stderr);
      t.equal(un.stdout.trim(), s.commit, `prints the commit checksum (${mode})`);
      checkImported(t, dst, s, 'imported');
    }
  });
}

t.test('image metadata as ostree-ext writes it', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d, { subject: '' });
  const dir = join(d, 'img');
  const r = cli(['encapsulate', '--repo', s.repo, 'main', `oci:${dir}`, '-l', 'foo=bar', '--max-layers', '3']);
  t.equal(r.status, 0, r.stderr);
  const v = readLayout(dir);
  const labels = v.config.config!.Labels!;
  t.equal(labels['ostree.commit'], s.commit);
  t.equal(labels['ostree.bootable'], 'true');
  t.equal(labels['containers.bootc'], '1');
  t.equal(labels['ostree.linux'], '6.1.0-sample');
  t.equal(labels['org.opencontainers.image.version'], '42.0');
  t.notOk('version' in labels, 'no legacy version label');
  t.equal(labels['foo'], 'bar');
  t.equal(labels['ostree.final-diffid'], v.config.rootfs.diff_ids[v.config.rootfs.diff_ids.length - 1]);
  t.same(v.manifest['annotations'], labels, 'manifest annotations = config labels');
  t.equal(v.config['created'], '2023-11-14T22:13:20Z', 'created = commit timestamp');
  t.same((v.config.config as Record<string, unknown>)['Cmd'], ['/usr/bin/hello'], 'Cmd from ostree.container-cmd');
  const history = v.config['history'] as Array<{ created: string; created_by: string }>;
  t.equal(history.length, v.manifest.layers.length);
  t.equal(history[0]!.created_by, `ostree export of commit ${s.commit}`, 'empty subject → "ostree export of commit …"');
  for (const h of history) t.equal(h.created, '2023-11-14T22:13:20Z');
  t.notOk('annotations' in (v.manifest.layers[0] as object), 'commit layer has no annotations');
  for (const l of v.manifest.layers.slice(1)) t.match((l as { annotations?: Record<string, string> }).annotations?.['ostree.components'], /^\//);
  t.equal(v.index.manifests.length, 1);
  t.match(v.config['architecture'], /\w/);
  t.equal(v.config['os'], 'linux');

  // --cmd overrides, a missing --copymeta key is an error naming it.
  const r2 = cli(['encapsulate', '--repo', s.repo, 'main', `oci:${join(d, 'img2')}`, '--cmd', '/bin/sh', '--cmd', '-c', '--copymeta', 'version']);
  t.equal(r2.status, 0, r2.stderr);
  t.same((readLayout(join(d, 'img2')).config.config as Record<string, unknown>)['Cmd'], ['/bin/sh', '-c']);
  const r3 = cli(['encapsulate', '--repo', s.repo, 'main', `oci:${join(d, 'img3')}`, '--copymeta', 'no.such.key']);
  t.not(r3.status, 0);
  t.match(r3.stderr, /could not find commit metadata key: no\.such\.key/);

  // Same input, same image: deterministic layers and (same zlib) manifest.
  const again = cli(['encapsulate', '--repo', s.repo, 'main', `oci:${join(d, 'img4')}`, '-l', 'foo=bar', '--max-layers', '3']);
  t.equal(again.status, 0, again.stderr);
  t.same(readLayout(join(d, 'img4')).config.rootfs.diff_ids, v.config.rootfs.diff_ids, 'identical diffids');
  t.equal(readLayout(join(d, 'img4')).manifestDigest, v.manifestDigest, 'identical manifest digest');
});

t.test('re-import into a repository that has the objects; a corrupted stored copy is detected', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d);
  const img = `oci:${join(d, 'img')}`;
  t.equal(cli(['encapsulate', '--repo', s.repo, 'main', img, '--max-layers', '3']).status, 0);
  // Into the source repository itself: everything is already there, all of it is re-verified.
  const again = cli(['unencapsulate', '--repo', s.repo, img, '--json']);
  t.equal(again.status, 0, again.stderr);
  const stats = (JSON.parse(again.stdout) as { stats: { filesWritten: number; filesAlreadyPresent: number } }).stats;
  t.equal(stats.filesWritten, 0);
  t.ok(stats.filesAlreadyPresent > 10);

  const dst = join(d, 'dst');
  ostreeInit(dst, 'bare-user');
  t.equal(cli(['unencapsulate', '--repo', dst, img, '--ref', 'first']).status, 0);
  // Corrupt the stored copy of usr/share/doc/README in dst (bare-user: a plain file).
  const repo = Repo.open(dst);
  const readme = [...repo.walk(s.commit)].find((e) => e.kind === 'file' && e.path === '/usr/share/doc/README');
  repo.close();
  t.ok(readme && readme.kind === 'file');
  const csum = (readme as { checksum: string }).checksum;
  const objFile = join(dst, 'objects', csum.slice(0, 2), `${csum.slice(2)}.file`);
  appendFileSync(objFile, 'tampered');
  const objectsBefore = countObjects(dst);
  const bad = cli(['unencapsulate', '--repo', dst, img, '--ref', 'second']);
  t.not(bad.status, 0);
  t.match(bad.stderr, new RegExp(`file object checksum mismatch at .*${csum.slice(2)}\\.file \\(copy already in`));
  t.equal(execFileSync('ostree', ['refs', `--repo=${dst}`], { encoding: 'utf8' }).trim(), 'first', 'no new ref');
  t.equal(countObjects(dst), objectsBefore, 'nothing written');
  t.ok(readdirSync(join(dst, 'objects')).length > 0);
  t.ok(Repo.open(dst).hasObject(ObjectType.COMMIT, s.commit));
});

t.test('the layer tar does not depend on the source repository mode (bare-user, bare, archive)', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d, { bigFileMiB: 2 });
  const diffIds = new Map<string, string[]>();
  for (const mode of ['bare-user', 'bare', 'archive']) {
    let repo = s.repo;
    if (mode !== 'bare-user') {
      // Exported through different code: libostree's load_file (bare: header only, payload read
      // from the loose file; archive: header and decompressed payload stream).
      repo = join(d, `src-${mode}`);
      ostreeInit(repo, mode);
      execFileSync('ostree', ['pull-local', `--repo=${repo}`, s.repo, s.commit]);
    }
    const enc = cli(['encapsulate', '--repo', repo, s.commit, `oci:${join(d, `img-${mode}`)}:v1`, '--max-layers', '3', '--json']);
    t.equal(enc.status, 0, enc.stderr);
    diffIds.set(mode, (JSON.parse(enc.stdout) as { layers: Array<{ diffId: string }> }).layers.map((l) => l.diffId));
  }
  t.ok(diffIds.get('bare-user')!.length > 2, 'several layers');
  t.same(diffIds.get('bare'), diffIds.get('bare-user'), 'bare: identical layer tars');
  t.same(diffIds.get('archive'), diffIds.get('bare-user'), 'archive: identical layer tars');
});
