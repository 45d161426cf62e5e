/**
 * `ostree-oci composefs diff A B` (src/composefs/diff.ts): each kind of difference is named by
 * path and field; the sources (dumpfile, composefs image written by the oracle mkcomposefs,
 * repo:PATH:REV, IMGREF, dir:PATH) load to comparable trees; --json, --max, exit codes, errors.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, extractLayers, makeRichLayers, oracle } from './composefs-oci-helpers.js';
import { cli, ensureBuilt, tmp } from './helpers/tmp.js';
import { fsverityDigest } from '../src/composefs/fsverity.js';
import { diffTrees } from '../src/composefs/diff.js';
import { parseDumpfileSync } from '../src/composefs/dumpfile/reader.js';

ensureBuilt();

const BIG = fsverityDigest(Buffer.alloc(5000, 1)).toString('hex');
const OTHER = fsverityDigest(Buffer.alloc(5000, 2)).toString('hex');
const HELLO = fsverityDigest(Buffer.from('hello\n')).toString('hex');
const p = (d: string) => `${d.slice(0, 2)}/${d.slice(2)}`;

const BASE = [
  '/ 4096 40755 2 0 0 0 1000.0 - - -',
  '/big 5000 100644 1 0 0 0 1000.0 ' + p(BIG) + ' - ' + BIG,
  '/dev 0 20644 1 0 0 259 1000.0 - - -',
  '/dir 4096 40755 2 0 0 0 1000.0 - - -',
  '/dir/file 6 100644 1 0 0 0 1000.0 - hello\\n - user.a=1 user.b=2',
  '/h1 3 100644 2 0 0 0 1000.0 - abc -',
  '/h2 3 @100644 2 0 0 0 1000.0 /h1 - -',
  '/link 7 120777 1 0 0 0 1000.0 /target - -',
];

interface Diff {
  path: string;
  field: string;
  key?: string;
  a: string;
  b: string;
}

function run(a: string[], b: string[], dir: string, extra: string[] = []): { status: number; diffs: Diff[]; truncated: boolean } {
  writeFileSync(join(dir, 'a.dump'), `${a.join('\n')}\n`);
  writeFileSync(join(dir, 'b.dump'), `${b.join('\n')}\n`);
  const r = cli(['composefs', 'diff', join(dir, 'a.dump'), join(dir, 'b.dump'), '--json', ...extra]);
  const j = JSON.parse(r.stdout || '{"differences":[]}') as { differences: Diff[]; truncated: boolean };
  return { status: r.status, diffs: j.differences, truncated: j.truncated };
}

const edit = (line: string, re: RegExp, s: string): string[] => BASE.map((l) => (l.startsWith(`${line} `) ? l.replace(re, s) : l));

t.test('each kind of difference, by path and field', async (t) => {
  const dir = tmp(t);
  const same = run(BASE, BASE, dir);
  t.equal(same.status, 0);
  t.same(same.diffs, []);
  const cases: [string, string[], Diff[]][] = [
    ['mode', edit('/dir/file', / 100644 /, ' 100600 '), [{ path: '/dir/file', field: 'mode', a: '0644', b: '0600' }]],
    ['uid', edit('/dir', / 40755 2 0 0 /, ' 40755 2 5 0 '), [{ path: '/dir', field: 'uid', a: '0', b: '5' }]],
    ['gid', edit('/dir', / 40755 2 0 0 /, ' 40755 2 0 6 '), [{ path: '/dir', field: 'gid', a: '0', b: '6' }]],
    ['mtime', edit('/link', / 1000\.0 /, ' 1001.0 '), [{ path: '/link', field: 'mtime', a: '1000', b: '1001' }]],
    ['mtime nsec', edit('/link', / 1000\.0 /, ' 1000.5 '), [{ path: '/link', field: 'mtime', a: '1000', b: '1000.000000005' }]],
    ['xattr value', edit('/dir/file', /user\.a=1/, 'user.a=9'), [{ path: '/dir/file', field: 'xattr', key: 'user.a', a: '1', b: '9' }]],
    ['xattr key', edit('/dir/file', / user\.b=2/, ''), [{ path: '/dir/file', field: 'xattr', key: 'user.b', a: '2', b: '(absent)' }]],
    ['xattr binary', edit('/dir/file', /user\.b=2/, 'user.b=\\x00\\xff'), [{ path: '/dir/file', field: 'xattr', key: 'user.b', a: '2', b: '0x00ff' }]],
    // text that looks like hex against the byte it spells: never printed alike
    ['xattr 0x text', edit('/dir/file', /user\.b=2/, 'user.b=0x01'), [{ path: '/dir/file', field: 'xattr', key: 'user.b', a: '2', b: '0x30783031' }]],
    ['size + digest', edit('/big', /^\/big 5000 (.*) [0-9a-f]{64}$/, `/big 5001 $1 ${OTHER}`), [
      { path: '/big', field: 'size', a: '5000', b: '5001' },
      { path: '/big', field: 'digest', a: BIG, b: OTHER },
    ]],
    ['digest', edit('/big', /[0-9a-f]{64}$/, OTHER), [{ path: '/big', field: 'digest', a: BIG, b: OTHER }]],
    ['symlink target', edit('/link', /\/target/, '/elsewhere'), [{ path: '/link', field: 'symlink', a: '/target', b: '/elsewhere' }]],
    ['type', edit('/link', /^\/link .*$/, '/link 7 100644 1 0 0 0 1000.0 - /target -'), [{ path: '/link', field: 'type', a: 'symlink', b: 'regular file' }]],
    ['rdev', edit('/dev', / 259 /, ' 260 '), [{ path: '/dev', field: 'rdev', a: '1:3', b: '1:4' }]],
    // glibc's makedev(5000, 300): major and minor both spill into the high bits.
    ['rdev, wide', edit('/dev', / 259 /, ' 17592187324460 '), [{ path: '/dev', field: 'rdev', a: '1:3', b: '5000:300' }]],
    ['presence (A only)', BASE.filter((l) => !l.startsWith('/dir/file ')), [{ path: '/dir/file', field: 'presence', a: 'regular file', b: '(absent)' }]],
    ['presence (B only, a directory subtree once)', [...BASE, '/new 4096 40755 2 0 0 0 1000.0 - - -', '/new/x 0 100644 1 0 0 0 1000.0 - - -'], [
      { path: '/new', field: 'presence', a: '(absent)', b: 'directory' },
    ]],
    ['hardlink broken', BASE.filter((l) => !l.startsWith('/h2 ')).map((l) => l.replace(/^\/h1 3 100644 2/, '/h1 3 100644 1')), [
      { path: '/h1', field: 'nlink', a: '2', b: '1' },
      { path: '/h2', field: 'presence', a: 'regular file', b: '(absent)' },
    ]],
  ];
  for (const [name, b, want] of cases) {
    const r = run(BASE, b, dir);
    t.equal(r.status, 1, `${name}: exit 1`);
    t.same(r.diffs, want, name);
  }
  // Names that are not UTF-8, or hold a newline or a backslash, print escaped and distinct.
  const odd = run(BASE, [...BASE, '/\\xfe 0 100644 1 0 0 0 1000.0 - - -', '/\\xff 0 100644 1 0 0 0 1000.0 - - -', '/a\\nb 0 100644 1 0 0 0 1000.0 - - -', '/c\\\\d 0 100644 1 0 0 0 1000.0 - - -', '/é 0 100644 1 0 0 0 1000.0 - - -'], dir);
  t.same(odd.diffs.map((d) => d.path), ['/a\\x0ab', '/c\\\\d', '/é', '/\\xfe', '/\\xff'], 'escaped names, byte order');
  // Inline content and an external digest of the same bytes are the same content.
  const inline = ['/ 4096 40755 2 0 0 0 1000.0 - - -', '/f 6 100644 1 0 0 0 1000.0 - hello\\n -'];
  const external = ['/ 4096 40755 2 0 0 0 1000.0 - - -', `/f 6 100644 1 0 0 0 1000.0 ${p(HELLO)} - ${HELLO}`];
  t.same(run(inline, external, dir).diffs, [], 'inline vs external, same bytes: equal');
  // Depth-first order and --max.
  const many = BASE.map((l) => l.replace(/ 1000\.0 /, ' 2000.0 '));
  const all = run(BASE, many, dir);
  t.same(all.diffs.map((d) => d.path), ['/', '/big', '/dev', '/dir', '/dir/file', '/h1', '/h2', '/link']);
  const two = run(BASE, many, dir, ['--max', '2']);
  t.same(two.diffs.map((d) => d.path), ['/', '/big']);
  t.equal(two.truncated, true);
  const text = cli(['composefs', 'diff', join(dir, 'a.dump'), join(dir, 'b.dump'), '--max', '2']);
  t.equal(text.stdout, '/: mtime: 1000 → 2000\n/big: mtime: 1000 → 2000\n… (more differences; raise --max)\n');
  // The library, directly.
  const r = diffTrees(parseDumpfileSync(`${BASE.join('\n')}\n`), parseDumpfileSync(`${edit('/dir/file', / 100644 /, ' 100600 ').join('\n')}\n`));
  t.same(r.differences, [{ path: '/dir/file', field: 'mode', a: '0644', b: '0600' }]);
});

t.test('sources: image files, commits, images and directories compare', async (t) => {
  const dir = tmp(t);
  writeFileSync(join(dir, 'base.dump'), `${BASE.join('\n')}\n`);
  // An image written by the oracle's mkcomposefs from the dumpfile: same tree.
  oracle(['mkcomposefs', '--from-file', join(dir, 'base.dump'), join(dir, 'base.cfs')]);
  let r = cli(['composefs', 'diff', join(dir, 'base.cfs'), join(dir, 'base.dump')]);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, 'no differences\n');

  // An ostree commit against our own composefs image of it, and against a changed tree.
  const src = join(dir, 'tree');
  mkdirSync(join(src, 'usr/bin'), { recursive: true });
  writeFileSync(join(src, 'usr/bin/tool'), 'x'.repeat(1000));
  writeFileSync(join(src, 'usr/bin/small'), 'small\n');
  const repo = join(dir, 'repo');
  execFileSync('ostree', ['init', `--repo=${repo}`, '--mode=bare-user']);
  execFileSync('ostree', ['commit', `--repo=${repo}`, '-b', 'main', `--tree=dir=${src}`, '--owner-uid=0', '--owner-gid=0']);
  const img = join(dir, 'commit.cfs');
  const { Repo } = await import('../src/ostree/repo.js');
  const { composefsFromCommit } = await import('../src/composefs/from-commit.js');
  const rp = Repo.open(repo);
  try {
    await composefsFromCommit(rp, 'main', { outPath: img });
  } finally {
    rp.close();
  }
  r = cli(['composefs', 'diff', `repo:${repo}:main`, img]);
  t.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  chmodSync(join(src, 'usr/bin/tool'), 0o700);
  execFileSync('ostree', ['commit', `--repo=${repo}`, '-b', 'other', `--tree=dir=${src}`, '--owner-uid=0', '--owner-gid=0']);
  r = cli(['composefs', 'diff', `repo:${repo}:main`, `repo:${repo}:other`, '--json']);
  t.equal(r.status, 1);
  t.same((JSON.parse(r.stdout) as { differences: Diff[] }).differences, [{ path: '/usr/bin/tool', field: 'mode', a: '0644', b: '0700' }]);

  // An OCI image against its extraction, then one change on disk.
  const tars = await makeRichLayers(join(dir, 'rich'));
  const ref = await buildImage(join(dir, 'img'), tars);
  const rootfs = join(dir, 'rootfs');
  extractLayers(tars, rootfs);
  r = cli(['composefs', 'diff', ref, `dir:${rootfs}`]);
  t.equal(r.status, 0, r.stdout + r.stderr);
  execFileSync('setfattr', ['-n', 'user.foo', '-v', 'changed', join(rootfs, 'home/user')]);
  r = cli(['composefs', 'diff', ref, rootfs, '--json']);
  t.equal(r.status, 1);
  t.same((JSON.parse(r.stdout) as { differences: Diff[] }).differences, [{ path: '/home/user', field: 'xattr', key: 'user.foo', a: '(absent)', b: 'changed' }]);

  // Errors.
  r = cli(['composefs', 'diff', join(dir, 'missing.dump'), join(dir, 'base.dump')]);
  t.equal(r.status, 2);
  t.match(r.stderr, /missing\.dump: cannot read \(ENOENT\)/);
  r = cli(['composefs', 'diff', `repo:${repo}`, join(dir, 'base.dump')]);
  t.equal(r.status, 2);
  t.match(r.stderr, /expected repo:PATH:REV/);
  writeFileSync(join(dir, 'bad.dump'), '/ 4096 40755 2 0 0 0 1000.0 - - -\n/x nonsense\n');
  r = cli(['composefs', 'diff', join(dir, 'bad.dump'), join(dir, 'base.dump')]);
  t.equal(r.status, 2, 'a side that cannot be read: 2 (as diff(1)), never 1 ("different")');
  t.match(r.stderr, /bad\.dump: dumpfile line 2/);
  r = cli(['composefs', 'diff', join(dir, 'base.dump'), `oci:${join(dir, 'no-such-layout')}`]);
  t.equal(r.status, 2, 'an image that cannot be opened: 2');
  r = cli(['composefs', 'diff', 'a', 'b', '--max', '0']);
  t.equal(r.status, 2);
});
