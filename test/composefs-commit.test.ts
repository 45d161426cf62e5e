/**
 * Commit → composefs against ostree 2026.4 (oracle chroot): our digest equals the
 * `ostree.composefs.digest.v0` it writes with `ostree commit --generate-composefs-metadata`, and
 * our image equals the one `ostree checkout --composefs` writes — for a generated tree with every
 * tricky case, in archive, bare and bare-user repos, and for a Debian minbase rootfs.
 */
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Repo } from '../src/ostree/repo.js';
import { composefsFromCommit, COMPOSEFS_DIGEST_KEY_V0 } from '../src/composefs/from-commit.js';
import { commitWithComposefsDigest } from '../src/composefs/commit-metadata.js';
import { pseudoRandomBytes, writeSampleTree } from '../scripts/lib/sample-tree.js';
import { ensureBookwormRootfs } from '../scripts/lib/bookworm-rootfs.js';
import { cli, ostreeFsck, repoState, ROOT, tmp } from './helpers/tmp.js';

const ORACLE = join(ROOT, 'scripts', 'oracle.sh');
const oracle = (...args: string[]) => execFileSync(ORACLE, ['run', ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });

function setx(path: string, name: string, value: string): void {
  execFileSync('setfattr', ['-h', '-n', name, '-v', value, path]);
}

/** The tree of every case the spec lists as tested against real ostree (§6.3). */
function writeTrickyTree(dir: string): void {
  mkdirSync(dir);
  chmodSync(dir, 0o750);
  setx(dir, 'user.rootattr', 'on the root');
  const w = (rel: string, data: string | Buffer, mode = 0o644) => {
    writeFileSync(join(dir, rel), data);
    chmodSync(join(dir, rel), mode);
    return join(dir, rel);
  };
  mkdirSync(join(dir, 'sgid'));
  chmodSync(join(dir, 'sgid'), 0o2775);
  setx(join(dir, 'sgid'), 'user.dirattr', 'x');
  setx(join(dir, 'sgid'), 'trusted.overlay.opaque', 'y'); // must be escaped by the writer
  mkdirSync(join(dir, 'sticky'));
  chmodSync(join(dir, 'sticky'), 0o1777);
  mkdirSync(join(dir, 'closed'));
  chmodSync(join(dir, 'closed'), 0o000);
  const big = w('sgid/bigids', 'owned by high ids\n');
  chownSync(big, 70000, 70001);
  const e = w('empty-with-xattrs', '');
  setx(e, 'user.a', '1');
  setx(e, 'trusted.overlay.redirect', '/x');
  setx(e, 'trusted.plain', 'p');
  w('f4096', pseudoRandomBytes(4096, 1));
  w('f4097', pseudoRandomBytes(4097, 2));
  w('same-644', 'same bytes\n');
  w('same-755', 'same bytes\n', 0o755);
  w('hl-a', 'hardlinked\n');
  linkSync(join(dir, 'hl-a'), join(dir, 'hl-b'));
  w('etc', 'a regular file named etc\n');
  symlinkSync('/nowhere', join(dir, 'var'));
  w('ünïcödé name with spaces', 'x\n');
  w('new\nline', 'y\n');
  symlinkSync('t'.repeat(3000), join(dir, 'long-symlink'));
  const shared = w('shared-xattr-1', 'a\n');
  const shared2 = w('shared-xattr-2', 'b\n');
  for (const p of [shared, shared2]) setx(p, 'user.shared', 'same value');
}

async function compareWithOracle(t: Test, repoPath: string, d: string, ref: string): Promise<void> {
  const shown = oracle('ostree', 'show', `--repo=${repoPath}`, ref, `--print-metadata-key=${COMPOSEFS_DIGEST_KEY_V0}`);
  const expected = Buffer.from([...shown.matchAll(/0x([0-9a-f]{2})/g)].map((m) => parseInt(m[1]!, 16)));
  t.equal(expected.length, 32, 'oracle wrote a 32-byte digest');
  const repo = Repo.open(repoPath);
  try {
    const ours = join(d, `ours-${ref}.cfs`);
    const r = await composefsFromCommit(repo, ref, { outPath: ours });
    t.equal(r.digest.toString('hex'), expected.toString('hex'), `digest equals ostree 2026.4's (${repo.mode})`);
    oracle('sh', '-c', `cd '${d}' && ostree checkout --repo='${repoPath}' --composefs '${ref}' 'oracle-${ref}.cfs'`);
    const a = readFileSync(ours);
    const b = readFileSync(join(d, `oracle-${ref}.cfs`));
    t.ok(a.equals(b), `image byte-identical to ostree checkout --composefs (${a.length} bytes, ${repo.mode})`);
  } finally {
    repo.close();
  }
}

for (const mode of ['archive', 'bare', 'bare-user']) {
  t.test(`generated trees: digest and image equal ostree 2026.4 (${mode})`, async (t) => {
    const d = tmp(t);
    const repoPath = join(d, 'repo');
    writeTrickyTree(join(d, 'tricky'));
    writeSampleTree(join(d, 'sample'), { bigFileMiB: 1, containerLayout: true });
    oracle('ostree', 'init', `--repo=${repoPath}`, `--mode=${mode}`);
    for (const name of ['tricky', 'sample']) {
      oracle('ostree', 'commit', `--repo=${repoPath}`, '-b', name, `--tree=dir=${join(d, name)}`, '--generate-composefs-metadata', '--timestamp=2024-01-01');
      await compareWithOracle(t, repoPath, d, name);
    }
  });
}

t.test('commit-composefs writes what ostree --generate-composefs-metadata would; verify checks it', async (t) => {
  const d = tmp(t);
  const repoPath = join(d, 'repo');
  writeTrickyTree(join(d, 'tree'));
  execFileSync('ostree', ['init', `--repo=${repoPath}`, '--mode=bare-user']);
  execFileSync('ostree', ['commit', `--repo=${repoPath}`, '-b', 'plain', `--tree=dir=${join(d, 'tree')}`]);
  let r = cli(['verify', '--repo', repoPath, 'plain']);
  t.equal(r.status, 3, 'no digest yet: absent');
  t.match(r.stdout, /composefs-digest\s+absent/);
  r = cli(['commit-composefs', '--repo', repoPath, 'plain', '-b', 'sealed', '--json']);
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  // ostree 2026.4 accepts the new commit: checkout --composefs verifies the image against the key.
  const ck = spawnSync(ORACLE, ['run', 'sh', '-c', `cd '${d}' && ostree checkout --repo='${repoPath}' --composefs sealed o.cfs`], { encoding: 'utf8' });
  t.equal(ck.status, 0, ck.stderr);
  // And ostree 2026.4 committing the same tree computes the same digest.
  oracle('ostree', 'commit', `--repo=${repoPath}`, '-b', 'oracle', `--tree=dir=${join(d, 'tree')}`, '--generate-composefs-metadata');
  const shown = oracle('ostree', 'show', `--repo=${repoPath}`, 'oracle', `--print-metadata-key=${COMPOSEFS_DIGEST_KEY_V0}`);
  t.equal(Buffer.from([...shown.matchAll(/0x([0-9a-f]{2})/g)].map((m) => parseInt(m[1]!, 16))).toString('hex'), out.digest);
  r = cli(['verify', '--repo', repoPath, 'sealed', '--json']);
  t.equal(r.status, 0, r.stdout);
  t.equal(JSON.parse(r.stdout).checks[0].status, 'pass');
  t.doesNotThrow(() => ostreeFsck(repoPath));
  // ostree commit -b plain bound the source to `plain`; the new commit is bound to `sealed`, so a
  // pull of `sealed` (which checks the binding) accepts it.
  const binding = (ref: string): string => execFileSync('ostree', ['show', `--repo=${repoPath}`, ref, '--print-metadata-key=ostree.ref-binding'], { encoding: 'utf8' }).trim();
  t.equal(binding('plain'), "['plain']", 'the source is bound to its branch');
  t.equal(binding('sealed'), "['sealed']", 'the new commit is bound to BRANCH');
  const pulled = join(d, 'pulled');
  execFileSync('ostree', ['init', `--repo=${pulled}`, '--mode=bare-user']);
  execFileSync('ostree', ['remote', 'add', `--repo=${pulled}`, '--no-gpg-verify', 'src', `file://${repoPath}`]);
  const pull = spawnSync('ostree', ['pull', `--repo=${pulled}`, 'src', 'sealed'], { encoding: 'utf8' });
  t.equal(pull.status, 0, `ostree pull src sealed: ${pull.stderr}`);
  // Bad branch names and branches that collide with existing refs: usage errors, nothing written.
  execFileSync('ostree', ['refs', `--repo=${repoPath}`, '--create=dir/leaf', 'plain']);
  const before = repoState(repoPath);
  for (const [bad, why] of [['bad ref', /invalid ref name "bad ref"/], ['../up', /invalid ref name/], ['', /invalid ref name ""/], ['dir', /refs exist below it/], ['plain/x', /ref plain exists/]] as const) {
    const e = cli(['commit-composefs', '--repo', repoPath, 'plain', '-b', bad]);
    t.equal(e.status, 2, `-b ${JSON.stringify(bad)}: exit 2`);
    t.match(e.stderr, why, `-b ${JSON.stringify(bad)}: says why`);
  }
  t.equal(repoState(repoPath), before, 'refused branches: nothing written');

  // Content of one file changed (the object rewritten in place): the recomputed digest differs.
  const repo = Repo.open(repoPath);
  let victim = '';
  for (const e of repo.walk('sealed')) if (e.kind === 'file' && e.path === '/f4097') victim = e.checksum;
  repo.close();
  const obj = join(repoPath, 'objects', victim.slice(0, 2), `${victim.slice(2)}.file`);
  chmodSync(obj, 0o644);
  const bytes = readFileSync(obj);
  bytes[100] ^= 1;
  writeFileSync(obj, bytes);
  r = cli(['verify', '--repo', repoPath, 'sealed']);
  t.equal(r.status, 1);
  t.match(r.stdout, /composefs-digest\s+FAILED\s+Wrong fsverity digest in composefs image/);
  t.match(r.stdout, new RegExp(`expected ${out.digest}`));
});

t.test('symlink that does not fit inline: ostree 2026.4 aborts, we refuse naming it; one byte less works for both', async (t) => {
  const d = tmp(t);
  const repoPath = join(d, 'repo');
  execFileSync('ostree', ['init', `--repo=${repoPath}`, '--mode=bare-user']);
  // 32-byte compact inode + target: the image needs the target inline within one 4096-byte block.
  const target = (n: number): string => Array.from({ length: 17 }, () => 'a'.repeat(254)).join('/').slice(0, n);
  for (const [name, len] of [['fits', 4096 - 32 - 1], ['spills', 4096 - 32]] as const) {
    mkdirSync(join(d, name, 'usr'), { recursive: true });
    symlinkSync(target(len), join(d, name, 'usr', 'link'));
    writeFileSync(join(d, name, 'usr', 'f'), 'x');
    execFileSync('ostree', ['commit', `--repo=${repoPath}`, '-b', name, `--tree=dir=${join(d, name)}`, '--timestamp=2024-01-01']);
  }
  const ck = (ref: string) => spawnSync(ORACLE, ['run', 'sh', '-c', `cd '${d}' && ostree checkout --repo='${repoPath}' --composefs ${ref} ${ref}.cfs`], { encoding: 'utf8' });
  const fits = ck('fits');
  t.equal(fits.status, 0, `ostree 2026.4 builds the image of 4063-byte target: ${fits.stderr}`);
  const repo = Repo.open(repoPath);
  t.teardown(() => repo.close());
  await composefsFromCommit(repo, 'fits', { outPath: join(d, 'ours-fits.cfs') });
  t.ok(readFileSync(join(d, 'ours-fits.cfs')).equals(readFileSync(join(d, 'fits.cfs'))), 'byte-identical to ostree checkout --composefs');
  const spills = ck('spills');
  t.not(spills.status, 0, 'ostree 2026.4 cannot build the image of a 4064-byte target');
  t.match(spills.stderr, /Assertion|abort/i, 'it aborts');
  const r = cli(['composefs', '--repo', repoPath, 'spills', '--print-digest']);
  t.equal(r.status, 1, 'ours refuses');
  t.match(r.stderr, /\/usr\/link: symlink inode, xattrs and target reach 4096 bytes.*libostree cannot build a composefs image/);
  t.equal(r.stdout, '', 'no digest printed');
  await t.rejects(composefsFromCommit(repo, 'spills'), /\/usr\/link/, 'the library refuses too');
  const c = cli(['commit-composefs', '--repo', repoPath, 'spills', '-b', 'sealed']);
  t.not(c.status, 0, 'commit-composefs refuses');
  t.notOk(existsSync(join(repoPath, 'refs', 'heads', 'sealed')), 'no sealed commit');
});

t.test('the library result names the commit and keeps the tree', async (t) => {
  const d = tmp(t);
  const repoPath = join(d, 'repo');
  writeSampleTree(join(d, 'tree'), { bigFileMiB: 1 });
  execFileSync('ostree', ['init', `--repo=${repoPath}`, '--mode=archive']);
  const c = execFileSync('ostree', ['commit', `--repo=${repoPath}`, '-b', 'main', `--tree=dir=${join(d, 'tree')}`], { encoding: 'utf8' }).trim();
  const repo = Repo.open(repoPath);
  t.teardown(() => repo.close());
  const a = await commitWithComposefsDigest(repo, 'main', 'main');
  t.equal(a.parent, c, 'parent is the branch head, as ostree commit -b does');
  t.equal(a.source, c);
  const again = await commitWithComposefsDigest(repo, 'main', 'other');
  t.equal(again.digest, a.digest, 'same tree, same digest');
});

t.test('Debian minbase rootfs: digest and image equal ostree 2026.4', async (t) => {
  const rootfs = ensureBookwormRootfs(ROOT);
  const d = tmp(t);
  const repoPath = join(d, 'repo');
  oracle('ostree', 'init', `--repo=${repoPath}`, '--mode=bare-user');
  oracle('ostree', 'commit', `--repo=${repoPath}`, '-b', 'minbase', `--tree=dir=${rootfs}`, '--generate-composefs-metadata', '--timestamp=2024-01-01');
  await compareWithOracle(t, repoPath, d, 'minbase');
});
