/**
 * The ostree-ext tar format: tar-rs header encoding, export structure, determinism, the reader
 * against GNU tar output, import round trips and the historic xattrs encodings.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Repo } from '../src/ostree/repo.js';
import { ObjectType } from '../ostree-bindings/index.js';
import { parseXattrsVariant } from '../src/gvariant/ostree-types.js';
import { END_OF_ARCHIVE, EntryType, Header, padding, paxExtensionBytes, prepareHeaderPath } from '../src/container/tar-header.js';
import { parseLayerTar } from '../src/composefs/sources/layer-tar.js';
import { paxRecord, tarWithPax } from './helpers/tar.js';
import { exportChunk, exportCommitTar, exportFinalChunk } from '../src/container/tar-export.js';
import { CommitImporter } from '../src/container/tar-import.js';
import { TarReader } from '../src/container/tar-reader.js';
import { indexTar } from '../src/oci/tar-index.js';
import { collectContent } from '../src/container/chunking.js';
import { ostreeInit } from '../scripts/lib/sample-tree.js';
import { makeSampleRepo, readTarEntries, sha256hex, writeTarEntries, countObjects, type LayerEntry } from './container-helpers.js';
import { ostreeFsck, tmp } from './helpers/tmp.js';

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Import tar streams (first = commit layer) into a fresh repo in one transaction. */
async function importTars(repoPath: string, tars: Buffer[], mode = 'bare-user'): Promise<string> {
  ostreeInit(repoPath, mode);
  const repo = Repo.open(repoPath);
  try {
    return await repo.transaction(async () => {
      const imp = new CommitImporter(repo);
      for (let i = 0; i < tars.length; i++) await imp.importLayer(Readable.from([tars[i]!]), i === 0 ? 'commit' : 'object-set', `layer ${i}`);
      const r = await imp.finish();
      repo.setRef('imported', r.checksum);
      return r.checksum;
    });
  } finally {
    repo.close();
  }
}

t.test('tar-rs header encoding', async (t) => {
  const h = Header.gnu();
  const b = h.buf;
  t.equal(b.subarray(257, 263).toString('latin1'), 'ustar ', 'GNU magic');
  t.equal(b.subarray(263, 265).toString('latin1'), ' \0', 'GNU version');
  t.equal(b.subarray(136, 148).toString('latin1'), '00000000000\0', 'mtime 0, octal, NUL-terminated');
  h.setMode(0o755);
  h.setUid(0);
  h.setGid(1000);
  h.setSize(13);
  t.equal(b.subarray(100, 108).toString('latin1'), '0000755\0');
  t.equal(b.subarray(116, 124).toString('latin1'), '0001750\0');
  t.equal(b.subarray(124, 136).toString('latin1'), '00000000015\0');
  t.ok(b.subarray(265, 345).every((x) => x === 0), 'uname/gname/devmajor/devminor are NUL bytes');
  h.setEntryType(0x30);
  h.setPath('usr/bin/bash');
  h.setCksum();
  const ck = b.subarray(148, 156).toString('latin1');
  t.match(ck, /^[0-7]{7}\0$/, 'checksum: 7 octal digits + NUL');
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : b[i]!;
  t.equal(parseInt(ck, 8), sum);

  // Path normalization as Rust Path::components().
  const p = (s: string): string => {
    const x = Header.gnu();
    x.setPath(s);
    return x.buf.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
  };
  t.equal(p('./usr//bin/./bash'), 'usr/bin/bash');
  t.equal(p('./'), './');
  t.equal(p('usr/lib/'), 'usr/lib/');
  t.throws(() => p('../etc/passwd'), /`\.\.`/);
  t.throws(() => p('/etc/passwd'), /relative/);

  // Stale bytes: like tar-rs, a shorter path leaves the old bytes after its NUL.
  const r = Header.gnu();
  r.setPath('sysroot/ostree/repo/objects/ab/cdef');
  r.setPath('usr/x');
  t.equal(r.buf.subarray(0, 20).toString('latin1'), 'usr/x\0t/ostree/repo/');

  // A 100-byte name fits without a NUL; 101 bytes need a GNU L entry.
  const n100 = `usr/${'a'.repeat(96)}`;
  const h100 = Header.gnu();
  t.same(prepareHeaderPath(h100, n100), []);
  t.equal(h100.buf.subarray(0, 100).toString('utf8'), n100);
  const n101 = `usr/${'a'.repeat(97)}`;
  const h101 = Header.gnu();
  const pre = Buffer.concat(prepareHeaderPath(h101, n101));
  t.equal(pre.length, 1024, 'L header + one data block');
  t.equal(pre.subarray(0, 13).toString('latin1'), '././@LongLink');
  t.equal(pre[156], 0x4c, 'type L');
  t.equal(pre.subarray(100, 108).toString('latin1'), '0000644\0');
  t.equal(pre.subarray(124, 136).toString('latin1'), `${(102).toString(8).padStart(11, '0')}\0`, 'size = len + 1');
  t.equal(pre.subarray(512, 512 + 102).toString('utf8'), `${n101}\0`);
  t.equal(h101.buf.subarray(0, 100).toString('utf8'), n101.slice(0, 100), 'header keeps the first 100 bytes');

  // PAX: tar-rs's record length (a 10-byte record is written as 11) and a ustar header.
  const pax = Buffer.concat(paxExtensionBytes([['ab', Buffer.from('xyzw')]]));
  t.equal(pax.subarray(512, 523).toString('latin1'), '11 ab=xyzw\n');
  t.equal(pax.subarray(257, 265).toString('latin1'), 'ustar\x0000', 'PAX header is ustar');
  t.equal(pax[156], 0x78);
  t.ok(pax.subarray(0, 100).every((x) => x === 0), 'empty name');
  t.same(paxExtensionBytes([]), [], 'nothing for no records');
  // GNU tar agrees with our PAX records (binary-safe value).
  const d = tmp(t);
  const f = join(d, 'pax.tar');
  const fh = Header.gnu();
  fh.setEntryType(0x30);
  fh.setMode(0o644);
  fh.setUid(0);
  fh.setGid(0);
  fh.setSize(0);
  fh.setPath('f');
  fh.setCksum();
  writeFileSync(f, Buffer.concat([...paxExtensionBytes([['SCHILY.xattr.user.k', Buffer.from('v\u00e9')]]), fh.buf, Buffer.alloc(1024)]));
  const listed = execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-tvvf', f], { encoding: 'utf8' });
  t.match(listed, /\bf\b/);
});

t.test('export structure (ostree-ext tar format v1)', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d);
  const repo = Repo.open(s.repo);
  t.teardown(() => repo.close());
  const commit = repo.loadCommit(s.commit);
  const full = await collect(exportCommitTar(repo, commit));
  const tarPath = join(d, 'full.tar');
  writeFileSync(tarPath, full);
  // GNU tar and Python's tarfile read it without complaint.
  execFileSync('tar', ['-tf', tarPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  const py = execFileSync('python3', ['-c', 'import tarfile,sys; print(len(tarfile.open(sys.argv[1]).getmembers()))', tarPath], { encoding: 'utf8' });
  const entries = await readTarEntries(full);
  t.equal(Number(py.trim()), entries.length);
  t.equal(full.length % 512, 0);
  t.ok(full.subarray(full.length - 1024).every((x) => x === 0), 'ends with two zero blocks');

  const names = entries.map((e) => e.name);
  t.equal(names[0], './', 'root first');
  t.same(names.slice(1, 5), ['sysroot', 'sysroot/ostree', 'sysroot/ostree/repo', 'sysroot/ostree/repo/objects']);
  for (let i = 0; i < 256; i++) t.equal(names[5 + i], `sysroot/ostree/repo/objects/${i.toString(16).padStart(2, '0')}`);
  const R = 'sysroot/ostree/repo';
  t.same(names.slice(261, 270), [
    `${R}/extensions`, `${R}/refs`, `${R}/refs/heads`, `${R}/refs/mirrors`, `${R}/refs/remotes`, `${R}/state`, `${R}/tmp`, `${R}/tmp/cache`, `${R}/config`,
  ]);
  const config = entries[269]!;
  t.equal(config.data.toString(), '[core]\nrepo_version=1\nmode=bare-split-xattrs\n');
  t.equal(config.mode, 0o644);
  const c = s.commit;
  t.equal(names[270], `${R}/objects/${c.slice(0, 2)}/${c.slice(2)}.commit`, '.commit after config');
  t.equal(names[271], `${R}/objects/${c.slice(0, 2)}/${c.slice(2)}.commitmeta`, '.commitmeta right after it');
  t.ok(entries[270]!.data.equals(repo.loadMetadataBytes(ObjectType.COMMIT, c)), 'raw commit bytes');
  t.ok(entries[271]!.data.equals(s.commitmeta), 'raw commitmeta bytes');
  t.equal(names[272], `${R}/objects/${commit.commit.rootMeta.slice(0, 2)}/${commit.commit.rootMeta.slice(2)}.dirmeta`, 'root dirmeta next');
  t.equal(names[273], `${R}/objects/${commit.commit.rootTree.slice(0, 2)}/${commit.commit.rootTree.slice(2)}.dirtree`, 'root dirtree next');
  t.equal(new Set(names).size, names.length, 'no duplicate paths');

  const byName = new Map(entries.map((e) => [e.name, e]));
  // usr/etc is written as etc; var/tmp comes from the commit (not synthesized twice).
  t.ok(byName.has('etc/os-release') && !byName.has('usr/etc/os-release'));
  t.equal(byName.get('etc')!.type, 'directory');
  t.equal(byName.get('var/tmp')!.mode, 0o1777);
  // Zero-length files are plain files, others hardlinks to their object, same mode.
  t.equal(byName.get('usr/share/empty')!.type, 'file');
  t.equal(byName.get('usr/share/empty')!.data.length, 0);
  const su = byName.get('usr/bin/su-helper')!;
  t.equal(su.type, 'link');
  t.equal(su.mode, 0o4755);
  t.match(su.linkname, /^sysroot\/ostree\/repo\/objects\/[0-9a-f]{2}\/[0-9a-f]{62}\.file$/);
  const obj = byName.get(su.linkname!)!;
  t.equal(obj.type, 'file');
  t.equal(obj.mode, 0o4755);
  t.equal(obj.data.toString(), '#!/bin/sh\nexit 0\n');
  t.equal(byName.get('usr/bin/hello-hardlink')!.linkname, byName.get('usr/bin/hello')!.linkname, 'hardlinked files share one object');
  t.equal(byName.get('usr/share/restricted')!.mode, 0o750);
  // Symlink objects.
  const rel = byName.get(byName.get('usr/bin/readme-rel')!.linkname!)!;
  t.equal(rel.type, 'symlink');
  t.equal(rel.linkname, '../share/doc/README');
  // xattrs: .file-xattrs-link (regular, the a(ayay) bytes) before the object, and PAX records.
  const xf = byName.get('usr/share/xattr-file')!;
  const xobj = xf.linkname!;
  const linkEntry = byName.get(xobj.replace(/\.file$/, '.file-xattrs-link'))!;
  t.equal(linkEntry.type, 'file');
  t.same(
    parseXattrsVariant(linkEntry.data).map((x) => [x.name.toString(), x.value.toString()]),
    [['user.alpha', 'A'], ['user.zeta', 'z']],
  );
  t.same(byName.get(xobj)!.pax, { 'SCHILY.xattr.user.alpha': 'A', 'SCHILY.xattr.user.zeta': 'z' });
  t.ok(names.indexOf(xobj.replace(/\.file$/, '.file-xattrs-link')) < names.indexOf(xobj));
  // Long names (205 bytes) are there in full.
  t.ok(names.some((n) => n.endsWith(`usr/share/${'long-name-'.repeat(20)}end`)));
  // Every entry: mtime 0, numeric owners only.
  const py2 = execFileSync(
    'python3',
    ['-c', 'import tarfile,sys\nfor m in tarfile.open(sys.argv[1]).getmembers():\n  assert m.mtime==0 and m.uname=="" and m.gname=="", m.name\nprint("ok")', tarPath],
    { encoding: 'utf8' },
  );
  t.equal(py2.trim(), 'ok');

  // The commit layer: structure only, then (remainder) objects in checksum order.
  const { mapping } = collectContent(repo, commit, false);
  const layer = await readTarEntries(await collect(exportFinalChunk(repo, commit, mapping)));
  const objs = layer.filter((e) => e.name.endsWith('.file')).map((e) => e.name.split('/').slice(-2).join(''));
  t.same(objs, [...objs].sort(), 'content objects in checksum order');
  t.equal(objs.length, mapping.size);
  const firstObj = layer.findIndex((e) => e.name.endsWith('.file-xattrs-link'));
  const lastDir = layer.map((e) => e.type).lastIndexOf('directory');
  t.ok(lastDir < firstObj, 'all directories before the first object');
  t.notOk(layer.some((e) => e.name.startsWith('usr/etc')), 'etc mapped in chunks too');
  // A chunk layer: the skeleton without "./", then its objects.
  const chunk = await readTarEntries(await collect(exportChunk(repo, commit, new Map([...mapping].slice(0, 3)))));
  t.equal(chunk[0]!.name, 'sysroot');
  t.equal(chunk.filter((e) => e.name.endsWith('.file')).length, 3);
});

t.test('exports are deterministic and import back to the same commit and commitmeta', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d, { bigFileMiB: 3 });
  const repo = Repo.open(s.repo);
  t.teardown(() => repo.close());
  const commit = repo.loadCommit(s.commit);
  const a = await collect(exportCommitTar(repo, commit));
  await new Promise((r) => setTimeout(r, 1100));
  const b = await collect(exportCommitTar(repo, commit));
  t.equal(sha256hex(a), sha256hex(b), 'two exports 1.1 s apart are identical');

  const got = await importTars(join(d, 'full'), [a]);
  t.equal(got, s.commit);
  const dst = Repo.open(join(d, 'full'));
  t.teardown(() => dst.close());
  t.ok(dst.readCommitMetaBytes(s.commit)!.equals(s.commitmeta), 'commitmeta bytes identical');
  t.ok(dst.loadMetadataBytes(ObjectType.COMMIT, s.commit).equals(commit.bytes));
  t.match(ostreeFsck(join(d, 'full')), /no errors/);
  t.equal(execFileSync('ostree', ['rev-parse', `--repo=${join(d, 'full')}`, 'imported'], { encoding: 'utf8' }).trim(), s.commit);

  // Commit layer + two chunks.
  const { mapping } = collectContent(repo, commit, false);
  const keys = [...mapping.keys()];
  const half = (k: string[]) => new Map(k.map((c) => [c, mapping.get(c)!]));
  const layers = [
    await collect(exportFinalChunk(repo, commit, half(keys.slice(0, 2)))),
    await collect(exportChunk(repo, commit, half(keys.slice(2, 10)))),
    await collect(exportChunk(repo, commit, half(keys.slice(10)))),
  ];
  t.equal(await importTars(join(d, 'chunked'), layers, 'archive'), s.commit);
  t.match(ostreeFsck(join(d, 'chunked')), /no errors/);
  // Without the last chunk the commit is incomplete: error, nothing written.
  const p = join(d, 'incomplete');
  await t.rejects(importTars(p, layers.slice(0, 2)), /file object [0-9a-f]{64} \(\/[^)]+\) of commit [0-9a-f]{64} is missing/);
  t.equal(countObjects(p), 0, 'aborted transaction left no objects');
});

t.test('the reader handles GNU tar and PAX archives (long names, links, xattrs)', async (t) => {
  const d = tmp(t);
  const src = join(d, 'src');
  const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
  mkdirSync(join(src, 'd'.repeat(120)), { recursive: true });
  writeFileSync(join(src, long), 'long\n');
  writeFileSync(join(src, 'x'), 'xattr\n');
  execFileSync('setfattr', ['-n', 'user.k', '-v', 'val', join(src, 'x')]);
  symlinkSync('t'.repeat(140), join(src, 'sym'));
  for (const format of ['gnu', 'posix']) {
    const tarPath = join(d, `${format}.tar`);
    execFileSync('tar', [`--format=${format}`, '--xattrs', '--xattrs-include=*', '-C', src, '-cf', tarPath, '.']);
    const r = new TarReader(Readable.from([readFileSync(tarPath)]), format);
    const seen = new Map<string, { type: string; linkname: string; body: string; pax: string[] }>();
    for (let e = await r.next(); e; e = await r.next()) {
      const body = e.size ? (await r.readBody(1 << 20)).toString() : '';
      seen.set(e.path.replace(/^\.\//, ''), { type: e.type, linkname: e.linkname, body, pax: [...e.pax.keys()] });
    }
    t.equal(seen.get(long)?.body, 'long\n', `${format}: 270-byte name`);
    t.equal(seen.get('sym')?.type, '2');
    t.equal(seen.get('sym')?.linkname, 't'.repeat(140), `${format}: long link target`);
    t.ok(seen.get('x')?.pax.includes('SCHILY.xattr.user.k'), `${format}: xattr record`);
  }
  // Truncation is an error, never a silent short read.
  const whole = readFileSync(join(d, 'gnu.tar'));
  let dataAt = -1;
  const scan = new TarReader(Readable.from([whole]), 'scan');
  for (let e = await scan.next(); e; e = await scan.next()) {
    if (e.size > 0 && e.type === '0') {
      dataAt = e.offset + 512;
      break;
    }
  }
  t.ok(dataAt > 0);
  const cut = whole.subarray(0, dataAt + 2);
  const r = new TarReader(Readable.from([cut]), 'cut.tar');
  await t.rejects(
    (async () => {
      for (let e = await r.next(); e; e = await r.next()) if (e.size) await r.readBody(1 << 20);
    })(),
    /cut\.tar: truncated tar stream: entry data missing \(entry/,
  );
  let end = whole.length;
  while (end >= 512 && whole.subarray(end - 512, end).every((x) => x === 0)) end -= 512;
  const noEnd = new TarReader(Readable.from([whole.subarray(0, end)]), 'noend.tar');
  await t.rejects(
    (async () => {
      while (await noEnd.next());
    })(),
    /noend\.tar: tar stream ended without the end-of-archive marker/,
  );
  const bad = Buffer.from(whole);
  bad[0] = bad[0]! ^ 1;
  await t.rejects(new TarReader(Readable.from([bad]), 'bad.tar').next(), /bad\.tar: corrupt header at byte 0: checksum/);
});

t.test('the importer accepts every historic xattrs encoding', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d);
  const repo = Repo.open(s.repo);
  t.teardown(() => repo.close());
  const entries = await readTarEntries(await collect(exportCommitTar(repo, repo.loadCommit(s.commit))));
  const R = 'sysroot/ostree/repo/objects';
  const isLink = (e: LayerEntry): boolean => e.name.endsWith('.file-xattrs-link');

  // v1 (2022): .file-xattrs objects named by their sha256 + .file-xattrs-link hardlinks to them,
  // with relative (before 8ff0460) and full-path link targets.
  for (const relative of [true, false]) {
    const written = new Set<string>();
    const out: LayerEntry[] = [];
    for (const e of entries) {
      if (!isLink(e)) {
        out.push(e);
        continue;
      }
      const x = sha256hex(e.data);
      const xpath = `${R}/${x.slice(0, 2)}/${x.slice(2)}.file-xattrs`;
      if (!written.has(x)) {
        written.add(x);
        out.push({ ...e, name: xpath });
      }
      out.push({ ...e, type: 'link', data: Buffer.alloc(0), linkname: relative ? `../${x.slice(0, 2)}/${x.slice(2)}.file-xattrs` : xpath });
    }
    t.equal(await importTars(join(d, `v1-${relative}`), [writeTarEntries(out)]), s.commit, `v1 hardlinked xattrs (relative=${relative})`);
  }

  // v0: sysroot/ostree/repo/xattrs/<sha256> + objects/XX/Y.file.xattrs hardlinks (no link when empty).
  {
    const written = new Set<string>();
    const out: LayerEntry[] = [];
    for (const e of entries) {
      if (!isLink(e)) {
        out.push(e);
        continue;
      }
      const x = sha256hex(e.data);
      if (!written.has(x)) {
        written.add(x);
        out.push({ ...e, name: `sysroot/ostree/repo/xattrs/${x}` });
      }
      out.push({ ...e, name: e.name.replace(/\.file-xattrs-link$/, '.file.xattrs'), type: 'link', data: Buffer.alloc(0), linkname: `sysroot/ostree/repo/xattrs/${x}` });
    }
    t.equal(await importTars(join(d, 'v0'), [writeTarEntries(out)]), s.commit, 'v0 xattrs');
  }

  // PAX records only (no .file-xattrs-link at all).
  t.equal(await importTars(join(d, 'pax'), [writeTarEntries(entries.filter((e) => !isLink(e)))]), s.commit, 'PAX only');

  // A .file-xattrs whose bytes do not hash to its name is refused.
  {
    const out: LayerEntry[] = [];
    for (const e of entries) {
      if (isLink(e) && e.data.length) {
        const x = sha256hex(Buffer.concat([e.data, Buffer.from('x')]));
        const xpath = `${R}/${x.slice(0, 2)}/${x.slice(2)}.file-xattrs`;
        out.push({ ...e, name: xpath }, { ...e, type: 'link', data: Buffer.alloc(0), linkname: xpath });
      } else out.push(e);
    }
    await t.rejects(importTars(join(d, 'badx'), [writeTarEntries(out)]), /xattrs object checksum mismatch at .*\.file-xattrs/);
  }
  // PAX records that disagree with the .file-xattrs-link are refused.
  {
    const out = entries.map((e) => (e.pax ? { ...e, pax: { ...e.pax, 'SCHILY.xattr.user.zeta': 'Z' } } : e));
    await t.rejects(importTars(join(d, 'badpax'), [writeTarEntries(out)]), /PAX SCHILY\.xattr records disagree/);
  }
});

t.test('a commit whose only empty directory is /sysroot imports complete (ostree-ext bug avoided)', async (t) => {
  const d = tmp(t);
  const tree = join(d, 'tree');
  mkdirSync(join(tree, 'usr/bin'), { recursive: true });
  mkdirSync(join(tree, 'sysroot'));
  writeFileSync(join(tree, 'usr/bin/tool'), 'tool\n');
  const src = join(d, 'src');
  ostreeInit(src, 'bare-user');
  const c = execFileSync('ostree', ['commit', `--repo=${src}`, '-b', 'main', `--tree=dir=${tree}`, '--timestamp=2024-01-01T00:00:00Z'], { encoding: 'utf8' }).trim();
  const repo = Repo.open(src);
  t.teardown(() => repo.close());
  const commit = repo.loadCommit(c);
  const { mapping } = collectContent(repo, commit, false);
  const layer = await collect(exportFinalChunk(repo, commit, mapping));
  const entries = await readTarEntries(layer);
  const empty = '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d';
  t.ok(entries.some((e) => e.name === `sysroot/ostree/repo/objects/6e/${empty.slice(2)}.dirtree`), 'the empty dirtree is in the stream');
  t.equal(entries.filter((e) => e.name === 'sysroot').length, 1, 'no second sysroot entry');
  t.equal(await importTars(join(d, 'dst'), [layer]), c);
  t.match(ostreeFsck(join(d, 'dst')), /no errors/);
});

t.test('symlink targets survive byte for byte (long, denormal, odd)', async (t) => {
  const d = tmp(t);
  const tree = join(d, 'tree');
  mkdirSync(join(tree, 'usr/lib'), { recursive: true });
  const targets: Record<string, string> = {
    long: `${'t'.repeat(150)}/target`,
    denormal: '../../..//sbin/chkconfig',
    interior: 'a/./b',
    // Denormal and longer than the header's 100 bytes: a GNU long-link entry, literal.
    longDenormal: `${'x'.repeat(150)}//y`,
    longInterior: `${'y'.repeat(150)}/./z`,
    denormal100: `${'z'.repeat(97)}//w`,
    trailing: 'dir/',
    root: '/',
    dotstart: './here',
  };
  for (const [name, target] of Object.entries(targets)) symlinkSync(target, join(tree, 'usr/lib', name));
  const src = join(d, 'src');
  ostreeInit(src, 'bare-user');
  const c = execFileSync('ostree', ['commit', `--repo=${src}`, '-b', 'main', `--tree=dir=${tree}`], { encoding: 'utf8' }).trim();
  const repo = Repo.open(src);
  t.teardown(() => repo.close());
  const full = await collect(exportCommitTar(repo, repo.loadCommit(c)));
  const entries = await readTarEntries(full);
  for (const [name, target] of Object.entries(targets)) {
    const link = entries.find((e) => e.name === `usr/lib/${name}`)!;
    const obj = entries.find((e) => e.name === link.linkname)!;
    t.equal(obj.type, 'symlink');
    t.equal(obj.linkname, target, `${name}: target kept literally`);
  }
  t.equal(await importTars(join(d, 'dst'), [full]), c, 'same commit after import');
  t.match(ostreeFsck(join(d, 'dst')), /no errors/);
});

t.test('PAX records: both tar readers (ostree import, composefs layers) accept and refuse the same bodies', async (t) => {
  const rec = paxRecord;
  const good = rec('SCHILY.xattr.user.k=v');
  const n = good.length;
  const cases: Array<[string, string, boolean]> = [
    ['two records', good + rec('SCHILY.xattr.user.z=zz'), true],
    ['NUL padding after the records', `${good}\0\0\0`, true],
    ['binary-safe value with "=" in it', rec('SCHILY.xattr.user.e=a=b'), true],
    ['hexadecimal length', rec('SCHILY.xattr.user.k=v', (m) => `0x${m.toString(16)}`), false],
    ['length with a sign', rec('SCHILY.xattr.user.k=v', (m) => `+${m}`), false],
    ['length in exponent form', rec('SCHILY.xattr.user.k=v', (m) => `${m / 10}e1`), false],
    ['length with a fraction', rec('SCHILY.xattr.user.k=v', (m) => `${m}.0`), false],
    ['length one short (record does not end at a newline)', good.replace(/^\d+/, String(n - 1)), false],
    ['length past the end', good.replace(/^\d+/, String(n + 5)), false],
    ['no space after the length', good.replace(' ', ''), false],
    ['record without "="', rec('SCHILY.xattr.user.k'), false],
    ['empty key', rec('=v'), false],
  ];
  for (const [name, bodyText, ok] of cases) {
    const tar = tarWithPax(bodyText);
    const viaImport = (async () => {
      const r = new TarReader(Readable.from([tar]), 'pax.tar');
      const pax: string[] = [];
      for (let e = await r.next(); e; e = await r.next()) pax.push(...[...e.pax.keys()].map((k) => k.replace(/^SCHILY\.xattr\./, '')));
      return pax;
    })();
    const viaComposefs = (async () => {
      const pax: string[] = [];
      await parseLayerTar([tar], 'pax.tar', (e) => {
        pax.push(...e.xattrs.map((x) => x.key.toString('latin1')));
        return undefined;
      });
      return pax;
    })();
    if (ok) {
      const [a, b] = await Promise.all([viaImport, viaComposefs]);
      t.same(a, b, `${name}: both readers see the same records`);
      t.ok(a.length > 0, `${name}: records read`);
    } else {
      await t.rejects(viaImport, /pax\.tar: PAX header at byte 0: (malformed PAX record|PAX record without "=") at byte \d+/, `${name}: refused by the import reader`);
      await t.rejects(viaComposefs, /PAX header at byte 0: (malformed PAX record|PAX record without "=") at byte \d+/, `${name}: refused by the composefs reader`);
    }
  }
});

t.test('numeric header fields: octal digits up to the first NUL, spaces around them (as tar-rs reads them)', async (t) => {
  const entry = async (field: readonly [number, number], text: string) => {
    const f = Header.gnu();
    prepareHeaderPath(f, 'file');
    f.setEntryType(EntryType.Regular);
    f.setMode(0o644);
    f.setUid(0);
    f.setGid(0);
    f.setSize(1);
    f.buf.fill(0, field[0], field[0] + field[1]);
    f.buf.write(text, field[0], 'latin1');
    f.setCksum();
    const r = new TarReader(Readable.from([Buffer.concat([f.buf, Buffer.from('x'), padding(1), END_OF_ARCHIVE])]), 'num.tar');
    const e = await r.next();
    return e;
  };
  const SIZE = [124, 12] as const;
  const UID = [108, 8] as const;
  t.equal((await entry(SIZE, '00000000001'))!.size, 1, 'NUL-terminated octal');
  t.equal((await entry(SIZE, ' 1 '))!.size, 1, 'spaces around the digits');
  t.equal((await entry(UID, '0001750 '))!.uid, 1000, 'space-terminated uid');
  t.equal((await entry(UID, '12\0x'))!.uid, 10, 'bytes after the NUL are ignored (tar-rs reads 10 too)');
  await t.rejects(entry(SIZE, '0000001 777'), /num\.tar: bad size field in header at byte 0: invalid octal digit/, 'digits after a space');
  await t.rejects(entry(UID, '1 2\0'), /num\.tar: bad uid field in header at byte 0: invalid octal digit/, 'a space between digits');
  await t.rejects(entry(SIZE, '0000001x'), /bad size field in header at byte 0: invalid octal digit/, 'a letter in the digits');
});

t.test('PAX numbers (size, uid, gid): plain decimal digits in both tar readers', async (t) => {
  const tarWith = (kv: string): Buffer => tarWithPax(paxRecord(kv));
  const viaImport = async (tar: Buffer) => {
    const r = new TarReader(Readable.from([tar]), 'num.tar');
    const e = await r.next();
    return e!.uid;
  };
  const viaComposefs = async (tar: Buffer) => {
    let uid = -1;
    await parseLayerTar([tar], 'num.tar', (e) => {
      uid = Number(e.uid);
      return undefined;
    });
    return uid;
  };
  t.equal(await viaImport(tarWith('uid=1000')), 1000, 'import reader: uid=1000');
  t.equal(await viaComposefs(tarWith('uid=1000')), 1000, 'composefs reader: uid=1000');
  for (const kv of ['size=0x0', 'uid=1e3', 'gid=', 'uid= 7', 'uid=7.0', 'gid=+1']) {
    await t.rejects(viaImport(tarWith(kv)), /bad PAX (size|uid|gid)=/, `import reader refuses ${kv}`);
    await t.rejects(viaComposefs(tarWith(kv)), /bad PAX (size|uid|gid)=/, `composefs reader refuses ${kv}`);
  }
});

t.test('entries are read as tar-rs reads them, or refused where readers would disagree', async (t) => {
  const hdr = (name: string, type: EntryType, size: number, link?: string): Buffer => {
    const h = Header.gnu();
    h.buf.write(name, 0, 'utf8');
    h.setEntryType(type);
    h.setMode(0o644);
    h.setUid(0);
    h.setGid(0);
    h.setSize(size);
    if (link !== undefined) h.buf.write(link, 157, 'utf8');
    h.setCksum();
    return Buffer.from(h.buf);
  };
  const meta = (type: EntryType, body: Buffer): Buffer[] => [hdr('././@LongLink', type, body.length), body, padding(body.length)];
  const pax = (...kvs: string[]): Buffer[] => {
    const body = Buffer.from(kvs.map((kv) => paxRecord(kv)).join(''), 'latin1');
    return meta(EntryType.XHeader, body);
  };
  const first = async (parts: Buffer[]) => new TarReader(Readable.from([Buffer.concat([...parts, END_OF_ARCHIVE])]), 'p.tar').next();
  const file = hdr('short', EntryType.Regular, 0);
  // A GNU long name wins over a PAX path (tar-rs' order), which wins over the header's name.
  t.equal((await first([...meta(EntryType.GNULongName, Buffer.from('long/name\0')), ...pax('path=pax/name'), file]))!.path, 'long/name', 'L over PAX path');
  t.equal((await first([...pax('path=pax/name'), file]))!.path, 'pax/name', 'PAX path over the header');
  t.equal((await first([...meta(EntryType.GNULongLink, Buffer.from('long/target\0')), ...pax('linkpath=pax/target'), hdr('l', EntryType.Symlink, 0, 'h')]))!.linkname, 'long/target', 'K over PAX linkpath');
  // Ambiguous headers: refused.
  await t.rejects(first([...meta(EntryType.GNULongName, Buffer.from('a\0')), ...meta(EntryType.GNULongName, Buffer.from('b\0')), file]), /p\.tar: two GNU long name headers before one entry/);
  await t.rejects(first([...meta(EntryType.GNULongLink, Buffer.from('a\0')), ...meta(EntryType.GNULongLink, Buffer.from('b\0')), file]), /two GNU long link headers before one entry/);
  await t.rejects(first([...pax('path=a'), ...pax('path=b'), file]), /two PAX headers before one entry/);
  await t.rejects(first([...pax('path=a', 'path=b'), file]), /record "path" given twice/);
  // A directory or link whose size field is not 0: tar-rs skips that many bytes, others none.
  for (const [type, name] of [[EntryType.Directory, 'dir/'], [EntryType.Link, 'hard'], [EntryType.Symlink, 'sym']] as const) {
    await t.rejects(first([hdr(name, type, 1024, type === EntryType.Directory ? undefined : 'x'), Buffer.alloc(1024), file]), new RegExp(`entry of type '${String.fromCharCode(type)}' has a size of 1024 bytes`), `type ${String.fromCharCode(type)} with a size`);
  }
  t.equal((await first([hdr('dir/', EntryType.Directory, 0), file]))!.size, 0, 'a directory of size 0 is fine');
});

t.test('extended headers resolve alike in all three tar readers (import, composefs layers, oci-archive index)', async (t) => {
  const dir = tmp(t);
  const hdr = (name: string, type: number, size: number, opts: { link?: string; uid?: number; mode?: number } = {}): Buffer => {
    const h = Header.gnu();
    h.buf.write(name, 0, 'utf8');
    h.buf[156] = type;
    h.setMode(opts.mode ?? 0o644);
    h.setUid(opts.uid ?? 0);
    h.setGid(0);
    h.setSize(size);
    if (opts.link !== undefined) h.buf.write(opts.link, 157, 'utf8');
    h.setCksum();
    return Buffer.from(h.buf);
  };
  const meta = (type: EntryType, body: Buffer): Buffer[] => [hdr('././@LongLink', type, body.length), body, padding(body.length)];
  const pax = (...kvs: string[]): Buffer[] => meta(EntryType.XHeader, Buffer.from(kvs.map((kv) => paxRecord(kv)).join(''), 'latin1'));
  const L = (s: string): Buffer[] => meta(EntryType.GNULongName, Buffer.from(`${s}\0`));
  const K = (s: string): Buffer[] => meta(EntryType.GNULongLink, Buffer.from(`${s}\0`));
  const file = hdr('short', EntryType.Regular, 0);
  const sym = hdr('sym', EntryType.Symlink, 0, { link: 'h' });
  const tarOf = (parts: Buffer[]): Buffer => Buffer.concat([...parts, END_OF_ARCHIVE]);
  type Seen = { path: string; link: string };
  const viaImport = async (parts: Buffer[]): Promise<Seen> => {
    const e = (await new TarReader(Readable.from([tarOf(parts)]), 'x.tar').next())!;
    return { path: e.path, link: e.linkname };
  };
  const viaComposefs = async (parts: Buffer[]): Promise<Seen> => {
    let seen: Seen | undefined;
    await parseLayerTar([tarOf(parts)], 'x.tar', (e) => {
      seen ??= { path: e.path.toString(), link: e.linkpath.toString() };
      return undefined;
    });
    return seen!;
  };
  let n = 0;
  const viaIndex = async (parts: Buffer[]): Promise<Seen> => {
    const f = join(dir, `i${n++}.tar`);
    writeFileSync(f, tarOf(parts));
    const [e] = [...(await indexTar(f)).values()];
    return { path: e!.name, link: e!.linkname ?? '' };
  };
  for (const [reader, read] of [['import', viaImport], ['composefs', viaComposefs], ['oci-archive index', viaIndex]] as const) {
    t.equal((await read([...L('long/name'), ...pax('path=pax/name'), file])).path, 'long/name', `${reader}: L over PAX path`);
    t.equal((await read([...pax('path=pax/name'), ...L('long/name'), file])).path, 'long/name', `${reader}: L over PAX path, either order`);
    t.equal((await read([...pax('path=pax/name'), file])).path, 'pax/name', `${reader}: PAX path over the header`);
    t.equal((await read([...K('long/target'), ...pax('linkpath=pax/target'), sym])).link, 'long/target', `${reader}: K over PAX linkpath`);
    await t.rejects(read([...L('a'), ...L('b'), file]), /two GNU long name headers before one entry/, `${reader}: two L`);
    await t.rejects(read([...K('a'), ...K('b'), sym]), /two GNU long link headers before one entry/, `${reader}: two K`);
    await t.rejects(read([...pax('uid=1'), ...pax('mtime=5'), file]), /two PAX headers before one entry/, `${reader}: two PAX headers`);
    await t.rejects(read([...pax('path=a', 'path=b'), file]), /record "path" given twice/, `${reader}: a PAX key twice`);
    await t.rejects(read([...pax('SCHILY.xattr.user.a=1', 'SCHILY.xattr.user.a=2'), file]), /record "SCHILY\.xattr\.user\.a" given twice/, `${reader}: an xattr twice`);
  }

  // The composefs reader: type '0' with a trailing slash is a file (Go), NUL-type one a directory;
  // values an image cannot hold are refused, naming the entry.
  const kinds: string[] = [];
  await parseLayerTar([tarOf([hdr('a/', 0x30, 0), hdr('b/', 0, 0), hdr('c/', EntryType.Directory, 0)])], 'k.tar', (e) => {
    kinds.push(`${e.path.toString()} ${e.kind}`);
    return undefined;
  });
  t.same(kinds, ['a/ file', 'b/ dir', 'c/ dir']);
  const refused = async (parts: Buffer[], re: RegExp, what: string): Promise<void> => {
    await t.rejects(parseLayerTar([tarOf(parts)], 'r.tar', () => undefined), re, what);
  };
  await refused([...pax('uid=4294967296'), file], /r\.tar: uid 4294967296 does not fit in 32 bits \(entry "short"/, 'uid beyond 32 bits');
  await refused([...pax('gid=99999999999'), file], /gid 99999999999 does not fit in 32 bits/, 'gid beyond 32 bits');
  await refused([...pax('mtime=9223372036854775808'), file], /mtime 9223372036854775808 does not fit in 64 bits/, 'mtime 2^63');
  await refused([...pax('mtime=-9223372036854775809'), file], /mtime -9223372036854775809 does not fit in 64 bits/, 'mtime below -2^63');
  for (const [ma, mi] of [[4096, 0], [0, 1048576]]) {
    await refused([...pax(`SCHILY.devmajor=${ma}`, `SCHILY.devminor=${mi}`), hdr('c', EntryType.Char, 0)], new RegExp(`device ${ma}:${mi} cannot be stored`), `device ${ma}:${mi}`);
  }
  let edge: string | undefined;
  await parseLayerTar([tarOf([...pax('uid=4294967295', 'mtime=-9223372036854775808', 'SCHILY.devmajor=4095', 'SCHILY.devminor=1048575'), hdr('c', EntryType.Char, 0)])], 'e.tar', (e) => {
    edge = `${e.uid} ${e.mtimeSec} ${e.devmajor}:${e.devminor}`;
    return undefined;
  });
  t.equal(edge, '4294967295 -9223372036854775808 4095:1048575', 'the largest values that fit are kept');
});
