/** The foundation CLI: --help, show (text and JSON) and fsck against real repositories. */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ObjectType, Repo } from '../src/ostree/repo.js';
import { serializeMetadata } from '../src/gvariant/ostree-types.js';
import { ostreeCommit, ostreeInit, writeSampleTree } from '../scripts/lib/sample-tree.js';
import { CLI, cli, tmp } from './helpers/tmp.js';

t.test('--help lists commands and each command has --help', async (t) => {
  const r = cli(['--help']);
  t.equal(r.status, 0);
  for (const c of ['show', 'fsck']) {
    t.match(r.stdout, new RegExp(`\\b${c}\\b`));
    const h = cli([c, '--help']);
    t.equal(h.status, 0, `${c} --help`);
    t.match(h.stdout, /Usage: ostree-oci/);
  }
  const bad = cli(['no-such-command']);
  t.not(bad.status, 0);
});

t.test('a reader that goes away (| head -c 1): quiet exit 141 like SIGPIPE, no error message', async (t) => {
  const d = tmp(t);
  const dump = join(d, 'many.dump');
  const lines = ['/ 4096 40755 2 0 0 0 0.0 - - -'];
  for (let i = 0; i < 20000; i++) lines.push(`/f${i} 10 100644 1 0 0 0 0.0 - 0123456789 -`);
  writeFileSync(dump, `${lines.join('\n')}\n`);
  for (const [what, args] of [
    ['mkimage to stdout', `composefs mkimage --from-dump '${dump}' -`],
    ['dump', `composefs mkimage --from-dump '${dump}' '${d}/img' && node '${CLI}' composefs dump '${d}/img'`],
  ] as const) {
    const r = spawnSync('bash', ['-c', `set -o pipefail; node '${CLI}' ${args} | head -c 1 >/dev/null`], { encoding: 'utf8' });
    t.equal(r.status, 141, `${what}: exit 141`);
    t.equal(r.stderr, '', `${what}: nothing on stderr`);
  }
});

t.test('--version and -V print the version in package.json', async (t) => {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = cli([flag]);
    t.equal(r.status, 0, `${flag}: exit 0`);
    t.equal(r.stdout, `${version}\n`, `${flag}: prints ${version}`);
  }
});

t.test('show --json matches what ostree itself reports', async (t) => {
  const d = tmp(t);
  const repoPath = join(d, 'repo');
  writeSampleTree(join(d, 'tree'), { bigFileMiB: 1 });
  ostreeInit(repoPath, 'archive');
  const first = ostreeCommit(repoPath, join(d, 'tree'), { subject: 'first' });
  const second = ostreeCommit(repoPath, join(d, 'tree'), {
    subject: 'second',
    extraArgs: ['--add-metadata-string=version=1.2.3', '--body=long text'],
  });
  const meta = serializeMetadata([['ostree.sign.ed25519', { type: 'aay', value: [Buffer.alloc(64, 1), Buffer.alloc(64, 2)] }]]);
  const repo = Repo.open(repoPath);
  repo.writeCommitMeta(second, meta);
  repo.close();

  const r = cli(['show', '--repo', repoPath, 'main', '--json']);
  t.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  t.equal(s.checksum, second);
  t.equal(s.parent, first, 'parent is the previous commit');
  t.equal(s.subject, 'second');
  t.equal(s.body, 'long text');
  t.same(s.refs, ['main']);
  const version = s.metadata.find((m: { key: string }) => m.key === 'version');
  t.same({ type: version.type, value: version.value }, { type: 's', value: '1.2.3' });
  t.equal(s.commitmetaSize, meta.length);
  const sig = s.commitmeta.find((m: { key: string }) => m.key === 'ostree.sign.ed25519');
  t.equal(sig.elements, 2);
  t.equal(sig.type, 'aay');
  // Object counts agree with `ostree ls -R` (directories and non-directories, deduplicated by checksum).
  const ls = execFileSync('ostree', [`--repo=${repoPath}`, 'ls', '-R', '-C', 'main'], { encoding: 'utf8' });
  const files = new Set<string>();
  const dirtrees = new Set<string>();
  const dirmetas = new Set<string>();
  for (const line of ls.trim().split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (line.startsWith('d')) {
      dirtrees.add(cols[4]!);
      dirmetas.add(cols[5]!);
    } else files.add(cols[4]!);
  }
  t.same(s.objects, { commit: 1, dirtree: dirtrees.size, dirmeta: dirmetas.size, file: files.size });
  const text = cli(['show', '--repo', repoPath, second]);
  t.match(text.stdout, /ostree\.sign\.ed25519 \(aay, 2 elements, \d+ bytes\)/);
  t.match(text.stdout, new RegExp(`parent +${first}`));
});

t.test('fsck re-hashes content and names a corrupted object', async (t) => {
  const d = tmp(t);
  const repoPath = join(d, 'repo');
  writeSampleTree(join(d, 'tree'), { bigFileMiB: 2 });
  ostreeInit(repoPath, 'bare-user');
  ostreeCommit(repoPath, join(d, 'tree'));
  let r = cli(['fsck', '--repo', repoPath, '--json']);
  t.equal(r.status, 0, r.stderr);
  const [clean] = JSON.parse(r.stdout);
  t.same(clean.problems, []);
  t.ok(clean.files >= 15);
  // Corrupt objects in place (bare-user stores payloads, and symlink targets, as plain files): a
  // small file (hashed in a batch), a large one (streamed), a symlink.
  const repo = Repo.open(repoPath);
  const victims: string[] = [];
  for (const e of repo.walk('main')) {
    if (e.kind === 'file' && ['/usr/share/doc/README', '/usr/lib/big.bin', '/usr/bin/readme-rel'].includes(e.path)) victims.push(e.checksum);
  }
  repo.close();
  t.equal(victims.length, 3);
  for (const victim of victims) {
    const obj = join(repoPath, 'objects', victim.slice(0, 2), `${victim.slice(2)}.file`);
    chmodSync(obj, 0o644);
    // A symlink's target ends at its NUL: change a byte of it rather than append.
    const b = readFileSync(obj);
    b[0]! ^= 1;
    writeFileSync(obj, b);
  }
  r = cli(['fsck', '--repo', repoPath]);
  t.equal(r.status, 1);
  for (const victim of victims) t.match(r.stdout, new RegExp(`file ${victim}: content hashes to [0-9a-f]{64}`));
  t.match(r.stdout, /3 problems/);
  // Every mode: the batched path (bare, bare-user-only) and the libostree stream (archive) agree.
  for (const mode of ['bare', 'bare-user-only', 'archive'] as const) {
    const other = join(d, `repo-${mode}`);
    ostreeInit(other, mode);
    ostreeCommit(other, join(d, 'tree'));
    const o = cli(['fsck', '--repo', other, '--json']);
    t.equal(o.status, 0, `${mode}: ${o.stderr}`);
    const [res] = JSON.parse(o.stdout);
    t.same(res.problems, [], `${mode}: clean`);
    const r2 = Repo.open(other);
    const fileObjects = r2.reachableObjects(r2.resolveRev('main')).filter((x) => x.type === ObjectType.FILE).length;
    r2.close();
    t.equal(res.files, fileObjects, `${mode}: every file object checked`);
  }
  // Objects held by a parent repository (core.parent) have no loose file in the child: fsck and
  // encapsulate read them through libostree.
  const parent = join(d, 'repo-bare');
  const child = join(d, 'child');
  ostreeInit(child, 'bare');
  execFileSync('ostree', ['config', `--repo=${child}`, 'set', 'core.parent', parent]);
  ostreeCommit(child, join(d, 'tree'));
  // `ostree commit` wrote the objects into the child too: leave them to the parent.
  const rc = Repo.open(child);
  let removed = 0;
  for (const x of rc.reachableObjects(rc.resolveRev('main'))) {
    const p = x.type === ObjectType.FILE ? rc.loosePayloadPath(x.checksum)! : '';
    if (p && lstatSync(p, { throwIfNoEntry: false })) {
      rmSync(p);
      removed++;
    }
  }
  rc.close();
  t.ok(removed >= 15, `${removed} content objects are left to the parent`);
  t.equal(spawnSync('ostree', ['fsck', `--repo=${child}`]).status, 0, 'ostree fsck: the child is complete through its parent');
  const pf = cli(['fsck', '--repo', child, '--json']);
  t.equal(pf.status, 0, `child repository: ${pf.stderr}`);
  t.same(JSON.parse(pf.stdout)[0].problems, [], 'child repository: clean');
  const enc = cli(['encapsulate', '--repo', child, 'main', `oci:${join(d, 'child-img')}:x`]);
  t.equal(enc.status, 0, `encapsulate from the child repository: ${enc.stderr}`);
});
