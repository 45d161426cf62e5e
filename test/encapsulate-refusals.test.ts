/**
 * encapsulate refuses what it cannot write as an importable, faithful image — with an error
 * naming the path/object/field, a non-zero exit and no output written: commits with files whose
 * layer entries would fall on the sysroot/ostree/repo skeleton; a `created` that is not an RFC 3339
 * date-time skopeo can read (from --created, --contentmeta or a commit timestamp after 9999).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ostreeCommit, ostreeInit } from '../scripts/lib/sample-tree.js';
import { readLayout } from './container-helpers.js';
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
