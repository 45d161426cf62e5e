/**
 * encapsulate refuses what it cannot write as an importable, faithful image — with an error
 * naming the path/object/field, a non-zero exit and no output written: commits with files whose
 * layer entries would fall on the sysroot/ostree/repo skeleton; a `created` that is not an RFC 3339
 * date-time skopeo can read (from --created, --contentmeta or a commit timestamp after 9999); a
 * source repository whose commit, dirtree, dirmeta or content objects do not hash to their names.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ostreeCommit, ostreeInit } from '../scripts/lib/sample-tree.js';
import { makeSampleRepo, readLayout } from './container-helpers.js';
import { OstreeTarWriter } from '../src/container/tar-export.js';
import { TarBuilder, TarOutput } from '../src/container/tar-writer.js';
import { Repo } from '../src/ostree/repo.js';
import { cli, ensureBuilt, ostreeFsck, tmp } from './helpers/tmp.js';

ensureBuilt();

function put(root: string, rel: string, data: string): void {
  mkdirSync(join(root, rel, '..'), { recursive: true });
  writeFileSync(join(root, rel), data);
}

t.test('a file whose layer entry would fall on the sysroot/ostree/repo skeleton is refused', async (t) => {
  const d = tmp(t);
  const repo = join(d, 'repo');
  ostreeInit(repo, 'bare-user');
  const obj = `sysroot/ostree/repo/objects/aa/${'b'.repeat(62)}.file`;
  const colliding = [obj, 'sysroot/ostree/repo/config', 'sysroot/ostree/repo/tmp/x', 'sysroot/ostree'];
  for (const [i, rel] of colliding.entries()) {
    const tree = join(d, `tree${i}`);
    put(tree, 'usr/u', 'u\n');
    put(tree, rel, 'nested\n');
    const c = ostreeCommit(repo, tree, { branch: `b${i}` });
    for (const extra of [[], ['--max-layers', '2']]) {
      const out = join(d, `out${i}`);
      const r = cli(['encapsulate', '--repo', repo, c, `oci:${out}:x`, ...extra]);
      t.equal(r.status, 1, `${rel} ${extra.join(' ')}: exit 1`);
      t.match(r.stderr, `cannot encapsulate ${rel} `, `${rel}: the error names the path`);
      t.match(r.stderr, 'sysroot/ostree/repo skeleton');
      t.notOk(existsSync(out), `${rel}: nothing written`);
    }
  }

  // Files elsewhere below /sysroot do not collide: they are written and come back.
  const tree = join(d, 'ok');
  put(tree, 'usr/u', 'u\n');
  put(tree, 'sysroot/foo', 'foo\n');
  put(tree, 'sysroot/ostree/deploy/x/y', 'y\n');
  put(tree, 'sysroot/ostree/repository', 'not the repo\n');
  const c = ostreeCommit(repo, tree, { branch: 'ok' });
  for (const extra of [[], ['--max-layers', '2']]) {
    const out = join(d, `ok-${extra.length}`);
    const r = cli(['encapsulate', '--repo', repo, c, `oci:${out}:x`, ...extra]);
    t.equal(r.status, 0, r.stderr);
    const dst = join(d, `dst-${extra.length}`);
    ostreeInit(dst, 'bare-user');
    const u = cli(['unencapsulate', '--repo', dst, `oci:${out}:x`, '--json']);
    t.equal(u.status, 0, u.stderr);
    t.equal(JSON.parse(u.stdout).commit, c, 'the commit comes back');
    t.match(ostreeFsck(dst), /no errors/);
  }
});

t.test('created: only RFC 3339 date-times that skopeo can read', async (t) => {
  const d = tmp(t);
  const repo = join(d, 'repo');
  ostreeInit(repo, 'bare-user');
  const tree = join(d, 'tree');
  put(tree, 'usr/u', 'u\n');
  const c = ostreeCommit(repo, tree);
  const bad = [
    'garbage',
    '',
    '2024-01-01',
    '2024-01-01 00:00:00Z',
    '2024-01-01t00:00:00z',
    '2024-02-30T00:00:00Z',
    '2023-02-29T00:00:00Z',
    '2024-01-01T24:00:00Z',
    '2024-01-01T00:00:60Z',
    '2024-01-01T00:00:00',
    '2024-01-01T00:00:00.Z',
    '2024-01-01T00:00:00,5Z',
    '2024-01-01T00:00:00+24:00',
    '2024-01-01T0:00:00Z',
    '+10000-01-01T00:00:00Z',
    '0000-01-01T00:00:00+01:00',
  ];
  const out = join(d, 'out');
  for (const v of bad) {
    const r = cli(['encapsulate', '--repo', repo, c, `oci:${out}:x`, '--created', v]);
    t.equal(r.status, 2, `${JSON.stringify(v)}: usage error`);
    t.match(r.stderr, `--created ${JSON.stringify(v)} is not an RFC 3339 date-time`, `${JSON.stringify(v)}: named`);
    t.notOk(existsSync(out), `${JSON.stringify(v)}: nothing written`);
  }
  // Labels encapsulate sets itself: given by hand they would only make an image importers refuse.
  for (const label of ['ostree.commit=0000', 'ostree.final-diffid=sha256:00']) {
    const l = cli(['encapsulate', '--repo', repo, c, `oci:${out}:x`, '-l', label]);
    t.equal(l.status, 2, `-l ${label}: usage error`);
    t.match(l.stderr, `label ${label.split('=')[0]} (from -l) is set by encapsulate itself`, `-l ${label}: named`);
    t.notOk(existsSync(out), `-l ${label}: nothing written`);
  }
  const cm = join(d, 'cm.json');
  writeFileSync(cm, JSON.stringify({ version: 1, created: '2024-01-01', layers: {}, mapping: {} }));
  const r = cli(['encapsulate', '--repo', repo, c, `oci:${out}:x`, '--contentmeta', cm]);
  t.equal(r.status, 2);
  t.match(r.stderr, `${cm}: "created" "2024-01-01" is not an RFC 3339 date-time`);
  t.notOk(existsSync(out));

  // Written as given; history gets the same instant in UTC; skopeo parses the config.
  for (const [v, history] of [
    ['2024-02-29T03:04:05.123456789+01:30', '2024-02-29T01:34:05Z'],
    ['0000-01-01T00:00:00Z', '0000-01-01T00:00:00Z'],
    ['9999-12-31T23:59:59-00:00', '9999-12-31T23:59:59Z'],
  ] as const) {
    const ok = cli(['encapsulate', '--repo', repo, c, `oci:${out}:x`, '--created', v]);
    t.equal(ok.status, 0, ok.stderr);
    const config = readLayout(out).config as unknown as { created: string; history: Array<{ created: string }> };
    t.equal(config.created, v);
    t.same(new Set(config.history.map((h) => h.created)), new Set([history]));
    const inspect = JSON.parse(execFileSync('skopeo', ['inspect', `oci:${out}:x`], { encoding: 'utf8' })) as { Created: string };
    t.equal(Math.floor(Date.parse(inspect.Created) / 1000), Date.parse(history) / 1000, `skopeo reads ${v} (${inspect.Created})`);
  }

  // A commit timestamp after 9999: no RFC 3339 form, so an error unless --created is given.
  const late = execFileSync('ostree', ['commit', `--repo=${repo}`, '-b', 'late', '--timestamp=@253402300800', `--tree=dir=${tree}`], { encoding: 'utf8' }).trim();
  const lateOut = join(d, 'late');
  const e = cli(['encapsulate', '--repo', repo, 'late', `oci:${lateOut}:x`]);
  t.equal(e.status, 1);
  t.match(e.stderr, `commit ${late}: timestamp 253402300800 is after 9999-12-31T23:59:59Z`);
  t.notOk(existsSync(lateOut));
  const given = cli(['encapsulate', '--repo', repo, 'late', `oci:${lateOut}:x`, '--created', '2024-01-01T00:00:00Z']);
  t.equal(given.status, 0, given.stderr);
  t.equal((readLayout(lateOut).config as unknown as { created: string }).created, '2024-01-01T00:00:00Z');
});

t.test('a corrupt source repository: encapsulate re-hashes what it reads and names the object', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d, { bigFileMiB: 2 });
  const ls = (path: string, flags: string[] = []): string[] =>
    execFileSync('ostree', ['ls', `--repo=${s.repo}`, '-C', ...flags, s.commit, path], { encoding: 'utf8' }).trim().split(/\s+/);
  const obj = (c: string, ext: string): string => join('objects', c.slice(0, 2), `${c.slice(2)}.${ext}`);
  const fileObj = (path: string): string => ls(path)[4]!;
  const docDir = ls('/usr/share/doc', ['-d']);
  // Each case: the object, how to corrupt its bytes (still parseable), the path the error names.
  const cases: Array<{ what: string; type: string; csum: string; ext: string; at: string; edit: (b: Buffer) => void }> = [
    { what: 'large file', type: 'file', csum: fileObj('/usr/lib/big.bin'), ext: 'file', at: '/usr/lib/big.bin', edit: (b) => void (b[10]! ^= 1) },
    { what: 'small file', type: 'file', csum: fileObj('/usr/share/doc/README'), ext: 'file', at: '/usr/share/doc/README', edit: (b) => void (b[0]! ^= 1) },
    { what: 'symlink', type: 'file', csum: fileObj('/usr/bin/readme-rel'), ext: 'file', at: '/usr/bin/readme-rel', edit: (b) => void (b[0] = 0x2c) },
    { what: 'dirtree', type: 'dirtree', csum: docDir[4]!, ext: 'dirtree', at: '/usr/share/doc', edit: (b) => void (b[b.indexOf('README')] = 0x72) },
    { what: 'dirmeta', type: 'dirmeta', csum: docDir[5]!, ext: 'dirmeta', at: '/', edit: (b) => void (b[10]! ^= 0o2) },
    { what: 'commit', type: 'commit', csum: s.commit, ext: 'commit', at: `rev ${s.commit}`, edit: (b) => void (b[b.indexOf('sample')] = 0x53) },
  ];
  for (const c of cases) {
    const repo = join(d, `bad-${c.what.replace(/ /g, '-')}`);
    execFileSync('cp', ['-a', s.repo, repo]); // keeps the user.ostreemeta xattrs of bare-user objects
    const f = join(repo, obj(c.csum, c.ext));
    const b = readFileSync(f);
    c.edit(b);
    writeFileSync(f, b);
    for (const extra of [[], ['--max-layers', '3']]) {
      const out = join(d, `out-${c.what.replace(/ /g, '-')}-${extra.length}`);
      const r = cli(['encapsulate', '--repo', repo, s.commit, `oci:${out}:x`, ...extra]);
      t.equal(r.status, 1, `${c.what} ${extra.join(' ')}: exit 1`);
      t.match(r.stderr, `${c.type} object checksum mismatch at ${c.at === '/' ? '' : c.at}`, `${c.what}: names the object type and path`);
      t.match(r.stderr, `in repository ${repo}`, `${c.what}: names the repository`);
      t.match(r.stderr, `expected ${c.csum}`, `${c.what}: names the object`);
      // Metadata is checked before anything is written; content as it streams into its layer, and
      // the failed write then removes what it created.
      t.notOk(existsSync(out), `${c.what}: nothing left at the destination`);
    }
    if (c.what === 'small file') {
      // The exported writer, driven directly: small objects are hashed in batches, and the batch
      // is checked before writeCommit returns.
      const r = Repo.open(repo);
      try {
        const out = TarOutput.run(async (o) => {
          const b = new TarBuilder(o);
          await new OstreeTarWriter(r, r.loadCommit(s.commit), b).writeCommit();
          await b.finish();
        });
        const drain = async (): Promise<void> => {
          for await (const _ of out) void _;
        };
        await t.rejects(drain(), /file object checksum mismatch at \/usr\/share\/doc\/README/, 'OstreeTarWriter.writeCommit: the corrupt small file is an error');
      } finally {
        r.close();
      }
    }
  }
});
