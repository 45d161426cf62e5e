/**
 * encapsulate refuses what it cannot write as an importable, faithful image — with an error
 * naming the path/object/field, a non-zero exit and no output written: commits with files whose
 * layer entries would fall on the sysroot/ostree/repo skeleton.
 */
import t from 'tap';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ostreeCommit, ostreeInit } from '../scripts/lib/sample-tree.js';
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
