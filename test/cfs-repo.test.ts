/**
 * The composefs repository library (src/cfs): meta.json, the object store (digests checked with the
 * `fsverity` CLI), refs and their relative links, splitstreams (checked with a parser written from
 * composefs-rs' documentation and the `zstd` CLI), tar splitting (GNU tar input, byte-identical
 * reassembly), fsck finding each kind of damage, and gc.
 */
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CfsRepo,
  ObjectStore,
  SplitstreamWriter,
  CONTENT_TYPE,
  catSplitstream,
  readSplitstream,
  splitTar,
  fsckRepo,
  gcRepo,
  relativeLinkTarget,
  encodeTag,
  decodeTag,
  setImageRef,
  linkImage,
  linkStream,
  setOciTag,
  resolveOciTag,
  metaJsonBytes,
  CfsCorruptObjectError,
  CfsBusyError,
  CfsRepoError,
  storeImage,
  publishImage,
  SplitstreamFormatError,
} from '../src/cfs/index.js';
import { buildErofs } from '../src/composefs/erofs/writer.js';
import { newRoot, TreeNode, S_IFREG, S_IFDIR } from '../src/tree/model.js';
import { pseudoRandomBytes } from '../scripts/lib/sample-tree.js';
import { fsverityCli, parseSplitstreamIndependently, reassemble } from './cfs-helpers.js';
import { tmp } from './helpers/tmp.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const objFile = (repo: CfsRepo, hex: string): string => repo.objectPath(hex);

t.test('meta.json is what composefs-rs writes; open refuses other algorithms and old repos', async (t) => {
  const d = tmp(t);
  const repo = await CfsRepo.init(join(d, 'r'));
  const meta = readFileSync(join(d, 'r', 'meta.json'), 'utf8');
  t.equal(
    meta,
    '{\n  "version": 1,\n  "algorithm": "fsverity-sha256-12",\n  "features": {\n    "compatible": [],\n    "read-only-compatible": [],\n    "incompatible": []\n  }\n}\n',
  );
  t.equal(metaJsonBytes().toString(), meta);
  t.ok((await CfsRepo.init(join(d, 'r'))).path === repo.path, 'init is idempotent');

  mkdirSync(join(d, 's'));
  writeFileSync(join(d, 's', 'meta.json'), JSON.stringify({ version: 1, algorithm: 'fsverity-sha512-12' }));
  await t.rejects(CfsRepo.open(join(d, 's')), { name: 'CfsRepoError', message: /fsverity-sha512-12.*not supported/ });
  mkdirSync(join(d, 'old', 'objects'), { recursive: true });
  await t.rejects(CfsRepo.init(join(d, 'old')), { name: 'CfsRepoError', message: /no meta.json/ });
  await t.rejects(CfsRepo.open(join(d, 'nothing')), CfsRepoError);
  writeFileSync(join(d, 'v2.json'), '');
  mkdirSync(join(d, 'v2'));
  writeFileSync(join(d, 'v2', 'meta.json'), JSON.stringify({ version: 2, algorithm: 'fsverity-sha256-12' }));
  await t.rejects(CfsRepo.open(join(d, 'v2')), { message: /version 2 is newer/ });
});

t.test('object store: digests equal `fsverity digest`, dedup, re-verification of existing objects', async (t) => {
  const d = tmp(t);
  const repo = await CfsRepo.init(join(d, 'r'));
  const store = new ObjectStore(repo);
  const src = join(d, 'src');
  mkdirSync(src);
  const files = { small: pseudoRandomBytes(100, 1), page: pseudoRandomBytes(4096, 2), big: pseudoRandomBytes(3 * 1024 * 1024 + 17, 3) };
  for (const [n, b] of Object.entries(files)) writeFileSync(join(src, n), b);
  const cli = fsverityCli(Object.keys(files).map((n) => join(src, n)));

  const a = await store.storeBuffer(files.small);
  t.equal(a.hex, cli.get(join(src, 'small')));
  t.ok(a.written);
  async function* chunks(b: Buffer): AsyncGenerator<Buffer> {
    for (let o = 0; o < b.length; o += 65536) yield b.subarray(o, o + 65536);
  }
  const big = await store.storeStream(chunks(files.big));
  t.equal(big.hex, cli.get(join(src, 'big')), 'streamed > 1 MiB object (spilled to a temp file)');
  t.ok(readFileSync(objFile(repo, big.hex)).equals(files.big), 'object content');
  const page = await store.storeKnown(cli.get(join(src, 'page'))!, () => chunks(files.page));
  t.ok(page.written);
  t.same(readdirSync(repo.tmpDir).filter((n) => n.endsWith('.tmp')), [], 'no temporary file left');

  // A second store (another run) re-verifies instead of rewriting.
  const store2 = new ObjectStore(repo);
  let opened = false;
  const again = await store2.storeKnown(page.hex, () => {
    opened = true;
    return chunks(files.page);
  });
  t.notOk(again.written);
  t.notOk(opened, 'existing object: the source is not read');
  t.notOk((await store2.storeStream(chunks(files.big))).written);
  t.same(store2.stats, { written: 0, reused: 2, bytesWritten: 0, bytesReused: files.page.length + files.big.length });

  // Wrong content for a known digest: refused, nothing stored.
  await t.rejects(store2.storeKnown('00'.repeat(32), () => chunks(files.small)), { name: 'CfsDigestMismatchError' });
  t.notOk(existsSync(objFile(repo, '00'.repeat(32))));

  // A corrupted object is reported when met again, never accepted.
  const p = objFile(repo, page.hex);
  chmodSync(p, 0o644);
  const bad = Buffer.from(files.page);
  bad[100] ^= 1;
  writeFileSync(p, bad);
  const store3 = new ObjectStore(repo);
  await t.rejects(store3.storeKnown(page.hex, () => chunks(files.page)), CfsCorruptObjectError);
  await t.rejects(store3.storeBuffer(files.page), { name: 'CfsCorruptObjectError', message: new RegExp(page.hex) });
});

t.test('refs: composefs-rs relative links, tag escaping, tag resolution', async (t) => {
  t.equal(relativeLinkTarget('images/refs/a', 'images/abc'), '../abc');
  t.equal(relativeLinkTarget('images/refs/a/b/c', 'images/abc'), '../../../abc');
  t.equal(relativeLinkTarget('images/abc', 'objects/ab/c'), '../objects/ab/c');
  t.equal(relativeLinkTarget('streams/refs/oci/x', 'streams/oci-manifest-sha256:1'), '../../oci-manifest-sha256:1');
  for (const [raw, enc] of [
    ['myimage:latest', 'myimage:latest'],
    ['library/nginx', 'library%2Fnginx'],
    ['docker://busybox', 'docker:%2F%2Fbusybox'],
    ['100%/x', '100%25%2Fx'],
  ]) {
    t.equal(encodeTag(raw!), enc);
    t.equal(decodeTag(enc!), raw);
  }
  t.equal(decodeTag('a%252Fb'), 'a%2Fb', '%25 decodes first-level only');

  const d = tmp(t);
  const repo = await CfsRepo.init(join(d, 'r'));
  const store = new ObjectStore(repo);
  const obj = await store.storeBuffer(Buffer.from('image bytes'));
  await linkImage(repo, obj.hex);
  await setImageRef(repo, 'os/one', obj.hex);
  t.equal(readlinkSync(join(d, 'r', 'images', obj.hex)), `../objects/${obj.hex.slice(0, 2)}/${obj.hex.slice(2)}`);
  t.equal(readlinkSync(join(d, 'r', 'images/refs/os/one')), `../../${obj.hex}`);
  t.ok(readFileSync(join(d, 'r', 'images/refs/os/one')).equals(Buffer.from('image bytes')), 'ref resolves to the object');
  await t.rejects(setImageRef(repo, '../escape', obj.hex), { name: 'UsageError' });
  await t.rejects(setImageRef(repo, 'a/../b', obj.hex), { name: 'UsageError' });

  await linkStream(repo, 'oci-manifest-sha256:abcd', obj.hex);
  await setOciTag(repo, 'quay.io/x/y:1', 'sha256:abcd');
  t.equal(readlinkSync(join(d, 'r', 'streams/refs/oci/quay.io%2Fx%2Fy:1')), '../../oci-manifest-sha256:abcd');
  t.same(await resolveOciTag(repo, 'quay.io/x/y:1'), { manifestDigest: 'sha256:abcd', streamHex: obj.hex });
  await t.rejects(resolveOciTag(repo, 'nope'), CfsRepoError);
  await t.rejects(setOciTag(repo, 'a@sha256:1', 'sha256:abcd'), { name: 'UsageError' });
});

t.test('splitstream: writer output parsed independently, reader, old header layout', async (t) => {
  const d = tmp(t);
  const repo = await CfsRepo.init(join(d, 'r'));
  const store = new ObjectStore(repo);
  const w = await SplitstreamWriter.create(store, CONTENT_TYPE.OCI_CONFIG);
  const ext1 = pseudoRandomBytes(5000, 11);
  const ext2 = pseudoRandomBytes(70, 12);
  const other = await store.storeBuffer(Buffer.from('another stream'));
  w.addNamedStreamRef('zeta', other.hex);
  w.addNamedStreamRef('alpha', other.hex);
  w.writeInline(Buffer.from('head'));
  w.writeInline(Buffer.from('er'));
  const e1 = await w.writeExternalBuffer(ext1);
  w.writeInline(Buffer.from('middle'));
  await w.writeExternalBuffer(ext2);
  await w.writeExternalBuffer(ext1); // same object again: same index
  w.writeInline(Buffer.from('tail'));
  const r = await w.done();
  const expected = Buffer.concat([Buffer.from('header'), ext1, Buffer.from('middle'), ext2, ext1, Buffer.from('tail')]);

  const path = objFile(repo, r.hex);
  t.equal(fsverityCli([path]).get(path), r.hex, 'stored as an object named by its fs-verity digest');
  const p = parseSplitstreamIndependently(path);
  t.equal(p.magic, 'SplitStream');
  t.equal(p.version, 0);
  t.equal(p.flags, 0);
  t.equal(p.algorithm, 1);
  t.equal(p.lgBlocksize, 12);
  t.equal(p.contentType, 'ociconfg');
  t.equal(p.streamSize, BigInt(expected.length));
  t.same(p.streamRefs, [other.hex]);
  writeFileSync(join(d, 'ext1'), ext1);
  writeFileSync(join(d, 'ext2'), ext2);
  const cliDigests = fsverityCli([join(d, 'ext1'), join(d, 'ext2')]);
  t.equal(e1.hex, cliDigests.get(join(d, 'ext1')));
  t.same(p.objectRefs, [cliDigests.get(join(d, 'ext1')), cliDigests.get(join(d, 'ext2'))], 'object refs in first-use order, deduplicated');
  t.same(p.namedRecords, ['0:alpha', '0:zeta'], 'named refs sorted by name');
  t.same(
    p.chunks.map((c) => ('inline' in c ? c.inline.toString() : c.object)),
    ['header', 0, 'middle', 1, 0, 'tail'],
    'adjacent inline writes coalesced; externals by index',
  );
  t.ok(reassemble(p, join(d, 'r', 'objects')).equals(expected));

  const info = await readSplitstream(path);
  t.equal(info.contentType, CONTENT_TYPE.OCI_CONFIG);
  t.same([...info.namedRefs], [['alpha', other.hex], ['zeta', other.hex]]);
  const parts: Buffer[] = [];
  for await (const c of catSplitstream(repo, info)) parts.push(c);
  t.ok(Buffer.concat(parts).equals(expected), 'our reader reassembles the same bytes');

  // bootc ≤ 1.15 header: info range at 0, flags at 16, magic at 18, version 29, algorithm 30, lg 31.
  const f = readFileSync(path);
  const old = Buffer.from(f);
  old.fill(0, 0, 32);
  f.copy(old, 0, 16, 32);
  f.copy(old, 16, 12, 14);
  f.copy(old, 18, 0, 11);
  old[29] = f[11]!;
  old[30] = f[14]!;
  old[31] = f[15]!;
  writeFileSync(join(d, 'old'), old);
  const oi = await readSplitstream(join(d, 'old'));
  t.ok(oi.oldLayout);
  t.same(oi.objectRefs, info.objectRefs);
  t.same([...oi.namedRefs], [...info.namedRefs]);

  const broken = Buffer.from(f);
  broken.write('SplitStreem', 0, 'latin1');
  writeFileSync(join(d, 'bad'), broken);
  await t.rejects(readSplitstream(join(d, 'bad')), { name: 'SplitstreamFormatError', message: /bad magic/ });
  writeFileSync(join(d, 'short'), f.subarray(0, f.length - 3));
  await t.rejects(readSplitstream(join(d, 'short')), SplitstreamFormatError);
});

t.test('tar split: GNU tar input → objects for files > 64 bytes, byte-identical reassembly', async (t) => {
  const d = tmp(t);
  const src = join(d, 'src');
  mkdirSync(join(src, 'dir', `${'n'.repeat(120)}`), { recursive: true });
  const sizes: Record<string, number> = { empty: 0, b64: 64, b65: 65, b511: 511, b512: 512, b4097: 4097, big: 2 * 1024 * 1024 + 3 };
  for (const [n, s] of Object.entries(sizes)) writeFileSync(join(src, 'dir', n), pseudoRandomBytes(s, s + 1));
  writeFileSync(join(src, 'dir', `${'n'.repeat(120)}`, 'long-path-file'), pseudoRandomBytes(300, 5));
  writeFileSync(join(src, 'dir', 'dup'), pseudoRandomBytes(4097, 4098)); // same content as b4097
  symlinkSync('b65', join(src, 'dir', 'link'));
  execFileSync('ln', [join(src, 'dir', 'b65'), join(src, 'dir', 'hard')]);
  execFileSync('setfattr', ['-n', 'user.test', '-v', 'x'.repeat(200), join(src, 'dir', 'b64')]);
  for (const [name, format] of [
    ['pax.tar', 'pax'],
    ['gnu.tar', 'gnu'],
  ]) {
    const tar = join(d, name!);
    execFileSync('tar', ['-C', src, `--format=${format}`, '--xattrs', '--xattrs-include=*', '-cf', tar, '.']);
    const bytes = readFileSync(tar);
    const repo = await CfsRepo.init(join(d, `r-${format}`));
    const store = new ObjectStore(repo);
    const w = await SplitstreamWriter.create(store, CONTENT_TYPE.OCI_LAYER);
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let o = 0; o < bytes.length; o += 7777) yield bytes.subarray(o, o + 7777); // odd chunking
    }
    const stats = await splitTar(chunks(), w);
    const r = await w.done();
    const p = parseSplitstreamIndependently(objFile(repo, r.hex));
    const back = reassemble(p, join(repo.path, 'objects'));
    t.equal(sha256(back), sha256(bytes), `${format}: reassembled tar is byte-identical`);
    t.equal(p.streamSize, BigInt(bytes.length));
    // Objects: exactly the regular files > 64 bytes (hardlink entries carry no data), by fs-verity.
    const regular = ['b65', 'b511', 'b512', 'b4097', 'big', 'dup', `${'n'.repeat(120)}/long-path-file`].map((n) => join(src, 'dir', n));
    const want = new Set(fsverityCli(regular).values());
    t.same(new Set(p.objectRefs), want, `${format}: objects are the files > 64 bytes, named by fs-verity digest`);
    t.equal(p.objectRefs.length, want.size - 0, 'identical content stored once');
    t.equal(stats.externalFiles, 7, 'b65 b511 b512 b4097 big dup long-path-file (hardlink "hard" has no data)');
    // Chunks are cut only at entry boundaries or around file content: every inline chunk ends, and
    // every external chunk starts, at a 512-byte block boundary of the tar.
    let off = 0;
    let aligned = true;
    for (const c of p.chunks) {
      if ('inline' in c) {
        off += c.inline.length;
        aligned &&= off % 512 === 0;
      } else {
        aligned &&= off % 512 === 0;
        off += readFileSync(join(repo.path, 'objects', p.objectRefs[c.object]!.slice(0, 2), p.objectRefs[c.object]!.slice(2))).length;
      }
    }
    t.ok(aligned, 'no header, padding or inline content is split across chunks');
    t.equal((await fsckRepo(repo)).ok, true);
  }

  // Truncated and sparse input is refused.
  const bytes = readFileSync(join(d, 'pax.tar'));
  const repo = await CfsRepo.init(join(d, 'r-bad'));
  const w = await SplitstreamWriter.create(new ObjectStore(repo), CONTENT_TYPE.OCI_LAYER);
  await t.rejects(splitTar([bytes.subarray(0, 1500)], w), { name: 'SplitstreamFormatError', message: /unexpected end|ends inside/ });
  await w.abort();
  const corrupt = Buffer.from(bytes);
  corrupt[101] ^= 0x01; // inside the first header's mode field: its checksum no longer matches
  const w2 = await SplitstreamWriter.create(new ObjectStore(repo), CONTENT_TYPE.OCI_LAYER);
  await t.rejects(splitTar([corrupt], w2), { name: 'SplitstreamFormatError', message: /bad header checksum at offset 0/ });
  await w2.abort();
  writeFileSync(join(d, 'sparse-src'), Buffer.alloc(0));
  execFileSync('truncate', ['-s', '1M', join(d, 'sparse-src')]);
  execFileSync('tar', ['-C', d, '--format=gnu', '--sparse', '-cf', join(d, 'sparse.tar'), 'sparse-src']);
  const w3 = await SplitstreamWriter.create(new ObjectStore(repo), CONTENT_TYPE.OCI_LAYER);
  await t.rejects(splitTar([readFileSync(join(d, 'sparse.tar'))], w3), { message: /sparse/ });
  await w3.abort();
  t.same((await repo.tempFiles()), [], 'aborted writers leave no temporary file');
});

/** A small image referencing two objects, published under images/refs/<name>. */
async function imageWithObjects(repo: CfsRepo, name: string, seed: number): Promise<{ image: string; objects: string[] }> {
  const store = new ObjectStore(repo);
  const root = newRoot();
  const objects: string[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await store.storeBuffer(pseudoRandomBytes(1000 + i, seed + i));
    objects.push(r.hex);
    const n = new TreeNode(`f${i}`, S_IFREG | 0o644);
    n.size = BigInt(r.size);
    n.digest = Buffer.from(r.hex, 'hex');
    n.payload = Buffer.from(`${r.hex.slice(0, 2)}/${r.hex.slice(2)}`);
    root.addChild(n);
  }
  root.addChild(new TreeNode('d', S_IFDIR | 0o755));
  const img = await storeImage(store, buildErofs(root, { minVersion: 0, maxVersion: 1 }));
  await publishImage(repo, img.hex, name);
  return { image: img.hex, objects };
}

t.test('fsck finds corrupted and missing objects, dangling refs, bad streams; gc keeps what refs reach', async (t) => {
  const d = tmp(t);
  const repo = await CfsRepo.init(join(d, 'r'));
  const a = await imageWithObjects(repo, 'a', 100);
  const b = await imageWithObjects(repo, 'b', 200);
  const store = new ObjectStore(repo);
  // A stream chain: tag → manifest stream → (named) layer stream → object.
  const lw = await SplitstreamWriter.create(store, CONTENT_TYPE.OCI_LAYER);
  const layerObj = await lw.writeExternalBuffer(pseudoRandomBytes(3000, 300));
  const layer = await lw.done();
  const mw = await SplitstreamWriter.create(store, CONTENT_TYPE.OCI_MANIFEST);
  mw.addNamedStreamRef('sha256:layer', layer.hex);
  const mObj = await mw.writeExternalBuffer(Buffer.from('{"manifest":1}'));
  const manifest = await mw.done();
  await linkStream(repo, 'oci-layer-sha256:layer', layer.hex);
  await linkStream(repo, 'oci-manifest-sha256:m', manifest.hex);
  await setOciTag(repo, 'img:1', 'sha256:m');
  const junk = await store.storeBuffer(Buffer.from('unreferenced'));

  let r = await fsckRepo(repo);
  t.ok(r.ok, JSON.stringify(r.errors));
  t.equal(r.objects.checked, 11, 'all objects checked: 2 images × (image + 2 files), 2 streams × (stream + 1 object), 1 junk');
  t.equal(r.images.checked, 2);
  t.equal(r.streams.checked, 2);
  t.equal(r.refs.checked, 3);

  // gc --dry-run removes nothing; gc removes only the junk object.
  const dry = await gcRepo(repo, { dryRun: true });
  t.same(dry.removed, [`objects/${junk.hex.slice(0, 2)}/${junk.hex.slice(2)}`]);
  t.ok(existsSync(objFile(repo, junk.hex)));
  const g = await gcRepo(repo);
  t.equal(g.objectsRemoved, 1);
  t.notOk(existsSync(objFile(repo, junk.hex)));
  for (const h of [...a.objects, a.image, ...b.objects, b.image, layer.hex, layerObj.hex, manifest.hex, mObj.hex]) t.ok(existsSync(objFile(repo, h)), `kept ${h}`);

  // Remove ref b: its image and objects go, the links to it too; a dry run names them first.
  rmSync(join(repo.path, 'images/refs/b'));
  const dry2 = await gcRepo(repo, { dryRun: true });
  t.same(dry2.removedLinks, [`images/${b.image}`], 'dry run names the image link it would remove');
  t.ok(existsSync(join(repo.path, 'images', b.image)), 'dry run left it');
  const g2 = await gcRepo(repo);
  t.same(g2.removedLinks, dry2.removedLinks, 'the real run removes what the dry run named');
  t.equal(g2.objectsRemoved, 3);
  t.equal(g2.imagesRemoved, 1);
  t.notOk(existsSync(join(repo.path, 'images', b.image)));
  t.ok((await fsckRepo(repo)).ok);

  // gc refuses while another process writes.
  const sleeper = spawn('sleep', ['30']);
  t.teardown(() => void sleeper.kill());
  writeFileSync(join(repo.tmpDir, `writer-${sleeper.pid}`), '');
  await t.rejects(gcRepo(repo), CfsBusyError);
  sleeper.kill();
  await new Promise((res) => sleeper.once('exit', res));
  t.equal((await gcRepo(repo)).objectsRemoved, 0, 'lock of a dead writer is ignored (and cleaned)');
  t.notOk(existsSync(join(repo.tmpDir, `writer-${sleeper.pid}`)));

  // Damage, one kind at a time.
  const victim = objFile(repo, a.objects[0]!);
  const saved = readFileSync(victim);
  const flipped = Buffer.from(saved);
  flipped[10] ^= 0x40;
  writeFileSync(victim, flipped);
  r = await fsckRepo(repo);
  t.notOk(r.ok);
  t.same(r.errors.map((e) => [e.kind, e.path]), [['corrupt-object', `objects/${a.objects[0]!.slice(0, 2)}/${a.objects[0]!.slice(2)}`]]);
  rmSync(victim);
  r = await fsckRepo(repo);
  t.same(r.errors.map((e) => e.kind), ['missing-object'], 'image references a missing object');
  t.match(r.errors[0]!.path, /^images\/[0-9a-f]{64}:\/f0$/);
  writeFileSync(victim, saved);
  t.ok((await fsckRepo(repo)).ok, 'repaired');

  rmSync(objFile(repo, layerObj.hex));
  r = await fsckRepo(repo);
  t.same(r.errors.map((e) => [e.kind, e.path]), [['missing-object', 'streams/oci-layer-sha256:layer']]);
  await new ObjectStore(repo).storeBuffer(pseudoRandomBytes(3000, 300));

  // Refs that resolve to a file, but not to an entry of images/: broken too (gc keeps only the
  // link's last component, so fsck must not call them fine).
  symlinkSync('/etc/passwd', join(repo.path, 'images/refs/outside'));
  symlinkSync(`../../objects/${a.objects[0]!.slice(0, 2)}/${a.objects[0]!.slice(2)}`, join(repo.path, 'images/refs/object'));
  r = await fsckRepo(repo);
  t.same(r.errors.map((e) => [e.kind, e.path]).sort(), [['broken-ref', 'images/refs/object'], ['broken-ref', 'images/refs/outside']], 'refs outside images/ are broken');
  rmSync(join(repo.path, 'images/refs/outside'));
  rmSync(join(repo.path, 'images/refs/object'));
  symlinkSync('../0000', join(repo.path, 'images/refs/dangling'));
  mkdirSync(join(repo.path, 'objects', 'ab'), { recursive: true });
  writeFileSync(join(repo.path, 'objects', 'ab', 'not-a-digest'), 'x');
  r = await fsckRepo(repo);
  t.same(r.errors.map((e) => e.kind).sort(), ['broken-ref', 'unexpected-file']);
  rmSync(join(repo.path, 'objects', 'ab', 'not-a-digest'));
  const gd = await gcRepo(repo);
  t.equal(gd.refsRemoved, 1, 'gc drops the dangling ref');
  t.ok((await fsckRepo(repo)).ok);

  // A stream object that is not a splitstream.
  const notStream = await new ObjectStore(repo).storeBuffer(Buffer.from('definitely not a splitstream, just bytes'));
  await linkStream(repo, 'oci-blob-sha256:x', notStream.hex);
  r = await fsckRepo(repo);
  t.same(r.errors.map((e) => e.kind), ['invalid-stream']);
});
