/**
 * OCI image → composefs (src/composefs/sources/oci-layers.ts, `ostree-oci composefs IMGREF`):
 * the layer rules checked on a real multi-layer image against what the oracle composefs-info
 * 1.0.8 reads from our image, `composefs-info dump` equal to our `--dump`, digests equal to the
 * fs-verity digest of the image file (`fsverity digest`), content digests equal to `fsverity
 * digest` of the files, root/implicit/boot/xattr options, flat memory on a big layer, and bad
 * input (unknown reference, corrupt or malformed layers → one clear error, no output file).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, craftTar, makeRichLayers, oracle, sh, T0, T_NEWEST, tarLayer } from './composefs-oci-helpers.js';
import { cli, CLI, ensureBuilt, tmp } from './helpers/tmp.js';
import { openImage } from '../src/oci/index.js';
import { scanLayer, treeFromImage } from '../src/composefs/sources/oci-layers.js';
import { composefsDigest } from '../src/composefs/index.js';

ensureBuilt();

interface DumpLine {
  size: string;
  mode: string;
  nlink: string;
  uid: string;
  gid: string;
  rdev: string;
  mtime: string;
  payload: string;
  content: string;
  digest: string;
  xattrs: string[];
}

function parseDump(text: string): Map<string, DumpLine> {
  const m = new Map<string, DumpLine>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [path, size, mode, nlink, uid, gid, rdev, mtime, payload, content, digest, ...xattrs] = line.split(' ');
    m.set(path!, { size: size!, mode: mode!, nlink: nlink!, uid: uid!, gid: gid!, rdev: rdev!, mtime: mtime!, payload: payload!, content: content!, digest: digest!, xattrs });
  }
  return m;
}

const ocli = (...args: string[]) => cli(args);
/** Run the CLI, expecting success (the failure message carries stderr). */
function ok(t: { equal: (a: unknown, b: unknown, m?: string) => void }, ...args: string[]): string {
  const r = cli(args);
  t.equal(r.status, 0, `ostree-oci ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

t.test('rich image: layer rules as composefs-info reads our image', async (t) => {
  const dir = tmp(t);
  const tars = await makeRichLayers(dir, { rootEntry: true });
  const ref = await buildImage(join(dir, 'img'), tars);
  const out = join(dir, 'out.cfs');
  const r = ocli('composefs', ref, '-o', out, '--print-digest');
  t.equal(r.status, 0, r.stderr);
  const digest = r.stdout.trim();
  t.match(digest, /^[0-9a-f]{64}$/);
  // The composefs digest is the fs-verity digest of the image file.
  t.equal(execFileSync('fsverity', ['digest', '--compact', out], { encoding: 'utf8' }).trim(), digest, 'digest = fsverity digest of the image');
  t.equal(ok(t, 'composefs', ref).trim(), digest, 'digest without -o is the same');

  const theirs = oracle(['composefs-info', 'dump', out]);
  const ours = ocli('composefs', ref, '--dump');
  t.equal(ours.status, 0, ours.stderr);
  t.equal(ours.stdout, theirs, 'composefs-info dump of our image = our --dump');
  writeFileSync(join(dir, 'ours.dump'), ours.stdout);
  oracle(['mkcomposefs', '--from-file', join(dir, 'ours.dump'), join(dir, 'mk.cfs')]);
  t.ok(readFileSync(join(dir, 'mk.cfs')).equals(readFileSync(out)), 'mkcomposefs --from-file of the dump rebuilds our image byte for byte');
  const d = parseDump(theirs);

  // Whiteouts (lower layers only) and opaque directories.
  for (const gone of ['/etc/sym', '/opt/dir', '/opt/old', '/opt/dir/inner', '/data/keep', '/data/sub', '/usr/bin/big']) t.notOk(d.has(gone), `${gone} whited out`);
  t.ok(d.has('/opt'), '/opt itself stays');
  t.equal(d.get('/data/newfile')?.content, 'new\\n', 'a file of the same layer before the opaque marker survives');
  t.equal(d.get('/etc/gone-with-replacement')?.content, 'second\\x20version\\n', 'whiteout + re-creation in one layer: the new file');
  // Hardlinks: first name of the surviving group owns the inode, nlink counts the names.
  t.equal(d.get('/usr/bin/big-link')?.mode, '104755');
  t.equal(d.get('/usr/bin/big-link')?.nlink, '2');
  t.equal(d.get('/usr/bin/big2')?.mode, '@104755', 'cross-layer hardlink');
  t.equal(d.get('/usr/bin/big2')?.payload, '/usr/bin/big-link');
  // Content: inline up to 64 bytes, external above, digests = fsverity digest of the bytes.
  t.equal(d.get('/usr/lib/exactly64')?.content, 'A'.repeat(64));
  t.equal(d.get('/usr/lib/exactly64')?.digest, '-');
  t.same(d.get('/usr/lib/exactly64')?.xattrs, [], 'trusted.* dropped by the allowlist');
  writeFileSync(join(dir, 'b65'), Buffer.alloc(65, 0x42));
  const d65 = execFileSync('fsverity', ['digest', '--compact', join(dir, 'b65')], { encoding: 'utf8' }).trim();
  t.equal(d.get('/usr/lib/bytes65')?.digest, d65, '65 bytes: external, fs-verity digest');
  t.equal(d.get('/usr/lib/bytes65')?.payload, `${d65.slice(0, 2)}/${d65.slice(2)}`);
  const rnd = execFileSync('fsverity', ['digest', '--compact', join(dir, 'l0/usr/lib/random')], { encoding: 'utf8' }).trim();
  t.equal(d.get('/usr/lib/random')?.digest, rnd, '1.5 MiB file (hashed on the worker thread): fs-verity digest');
  t.equal(d.get('/usr/lib/empty')?.size, '0');
  t.equal(d.get('/usr/lib/empty')?.payload, '-');
  t.ok(d.has('/usr/lib/caf\\xe9'), 'non-UTF-8 name kept byte for byte');
  // xattrs: allowlist keeps security.capability and user.*, drops trusted.*; replaced file's own.
  t.same(d.get('/usr/bin/big-link')?.xattrs, ['security.capability=\\x01\\x00\\x00\\x02\\x00\\x20\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00']);
  t.same(d.get('/usr/bin/small')?.xattrs, ['user.new=1'], 'replaced file: only the new xattrs');
  t.equal(d.get('/usr/bin/small')?.content, 'replaced\\n');
  t.same(d.get('/home/user')?.xattrs, ['user.dir=d']);
  t.equal(`${d.get('/home/user')?.mode} ${d.get('/home/user')?.uid} ${d.get('/home/user')?.gid}`, '40700 1234 1235');
  // Devices, fifo, char 0/0.
  t.equal(`${d.get('/etc/null')?.mode} ${d.get('/etc/null')?.rdev}`, '20644 259', 'char 1:3');
  t.equal(`${d.get('/etc/sda')?.mode} ${d.get('/etc/sda')?.rdev}`, '60644 2048', 'block 8:0');
  t.equal(`${d.get('/etc/wh-dev')?.mode} ${d.get('/etc/wh-dev')?.rdev}`, '20644 0', 'char 0/0 kept');
  t.equal(d.get('/etc/fifo')?.mode, '10644');
  // A file over a directory; mtimes in whole seconds (layer 0 had .5).
  t.equal(d.get('/etc/conf.d')?.mode, '100644');
  t.notOk(d.has('/etc/conf.d/a.conf'));
  t.equal(d.get('/usr/bin/big-link')?.mtime, `${T0}.0`, 'sub-second mtime floored');
  // Implicit parents: 0755 root:root, mtime = newest mtime of the final tree.
  for (const p of ['/x', '/x/y', '/usr/share', '/usr/share/doc']) {
    const l = d.get(p)!;
    t.equal(`${l.mode} ${l.uid} ${l.gid} ${l.mtime} ${l.xattrs.length}`, `40755 0 0 ${T_NEWEST}.0 0`, `${p} implicit`);
  }
  t.equal(d.get('/x/y/z')?.mtime, `${T0 - 100000}.0`);
  // The root: layer 0's `./` entry.
  t.equal(`${d.get('/')?.mode} ${d.get('/')?.mtime}`, `40755 ${T0}.0`, 'root from the tar root entry');
});

t.test('root metadata: synthesized, later root entry, from-usr; xattrs all; boot variant', async (t) => {
  const dir = tmp(t);
  const noRoot = await buildImage(join(dir, 'a'), await makeRichLayers(join(dir, 'la'), { rootEntry: false }));
  let d = parseDump(ok(t, 'composefs', noRoot, '--dump'));
  t.equal(`${d.get('/')?.mode} ${d.get('/')?.uid} ${d.get('/')?.gid} ${d.get('/')?.mtime}`, `40555 0 0 ${T_NEWEST}.0`, 'no root entry: 0555 root:root newest mtime');

  const later = await buildImage(join(dir, 'b'), await makeRichLayers(join(dir, 'lb'), { rootEntry: true, laterRoot: true }));
  d = parseDump(ok(t, 'composefs', later, '--dump'));
  t.equal(`${d.get('/')?.mode} ${d.get('/')?.mtime}`, `40750 ${T0 + 7}.0`, 'the most derived root entry wins');

  d = parseDump(ok(t, 'composefs', later, '--dump', '--root-metadata', 'synthesize'));
  t.equal(`${d.get('/')?.mode} ${d.get('/')?.mtime}`, `40555 ${T_NEWEST}.0`, 'synthesize ignores root entries');

  d = parseDump(ok(t, 'composefs', noRoot, '--dump', '--root-metadata', 'from-usr'));
  t.equal(`${d.get('/')?.mode} ${d.get('/')?.mtime}`, `${d.get('/usr')?.mode} ${d.get('/usr')?.mtime}`, 'from-usr copies /usr');

  // from-usr is composefs-rs's transform_for_oci: /run is emptied too and takes /usr's mtime.
  const withRun = await buildImage(join(dir, 'r'), [
    await craftTar(join(dir, 'run.tar'), [
      { name: 'usr/', type: 'directory', mtime: T0 + 3 },
      { name: 'usr/f', content: 'x', mtime: T0 },
      { name: 'run/', type: 'directory', mode: 0o755, mtime: T0 + 9 },
      { name: 'run/lock/', type: 'directory', mtime: T0 },
      { name: 'run/lock/pid', content: '1', mtime: T0 },
    ]),
  ]);
  d = parseDump(ok(t, 'composefs', withRun, '--dump', '--root-metadata', 'from-usr'));
  t.same([...d.keys()].filter((p) => p.startsWith('/run')), ['/run'], 'from-usr: /run emptied');
  t.equal(d.get('/run')?.mtime, `${T0 + 3}.0`, "from-usr: /run takes /usr's mtime");
  d = parseDump(ok(t, 'composefs', withRun, '--dump'));
  t.ok(d.has('/run/lock/pid'), 'image policy: /run kept');

  d = parseDump(ok(t, 'composefs', noRoot, '--dump', '--xattrs', 'all'));
  t.same(d.get('/usr/bin/big-link')?.xattrs.length, 1);
  t.same(d.get('/usr/lib/exactly64')?.xattrs, ['trusted.kept-by-all=x'], '--xattrs all keeps trusted.*');
  const all = parseDump(ok(t, 'composefs', later, '--dump', '--xattrs', 'all'));
  t.ok(all.get('/usr/bin/small')?.xattrs.includes('user.new=1'));

  const plain = parseDump(ok(t, 'composefs', noRoot, '--dump'));
  d = parseDump(ok(t, 'composefs', noRoot, '--dump', '--boot-variant'));
  t.ok(plain.has('/boot/vmlinuz') && plain.has('/sysroot/ostree'), 'content is there without --boot-variant');
  t.notOk(d.has('/boot/vmlinuz'), '/boot emptied');
  t.notOk(d.has('/sysroot/ostree'), '/sysroot emptied');
  t.equal(`${d.get('/boot')?.mode} ${d.get('/boot')?.uid} ${d.get('/boot')?.mtime}`, `${plain.get('/boot')?.mode} ${plain.get('/boot')?.uid} ${plain.get('/usr')?.mtime}`, '/boot keeps mode/owner, takes /usr mtime');
  t.equal(d.get('/')?.mtime, plain.get('/')?.mtime, 'root mtime computed before the boot transform');
  const digests = new Set([noRoot, later].flatMap((r) => [ok(t, 'composefs', r), ok(t, 'composefs', r, '--boot-variant')]));
  t.equal(digests.size, 4, 'every variant has its own digest');
});

t.test('compressions and the library API agree', async (t) => {
  const dir = tmp(t);
  const tars = await makeRichLayers(dir);
  const digests = [];
  for (const c of ['gzip', 'zstd', 'none'] as const) {
    const ref = await buildImage(join(dir, `img-${c}`), tars, { compression: c });
    digests.push(ok(t, 'composefs', ref).trim());
    if (c === 'zstd') {
      const img = await openImage(ref);
      try {
        digests.push(composefsDigest(await treeFromImage(img)).toString('hex'));
      } finally {
        await img.close();
      }
    }
  }
  t.equal(new Set(digests).size, 1, `same digest for gzip, zstd, uncompressed, library: ${digests[0]}`);
});

t.test('big layers stream: peak memory stays flat', async (t) => {
  const dir = tmp(t);
  const rss: number[] = [];
  for (const mib of [64, 320]) {
    // Random (incompressible) data in an uncompressed layer: no decompression-ratio limit applies.
    sh(`mkdir -p '${dir}/l${mib}' && head -c ${mib}M /dev/urandom > '${dir}/l${mib}/data'`);
    const ref = await buildImage(join(dir, `img${mib}`), [tarLayer(join(dir, `l${mib}`), join(dir, `l${mib}.tar`))], { compression: 'none' });
    const want = execFileSync('fsverity', ['digest', '--compact', join(dir, `l${mib}/data`)], { encoding: 'utf8' }).trim();
    sh(`rm -rf '${dir}/l${mib}' '${dir}/l${mib}.tar'`);
    const timeOut = join(dir, 'time');
    const out = execFileSync('/usr/bin/time', ['-f', '%M', '-o', timeOut, process.execPath, CLI, 'composefs', ref, '--dump'], { encoding: 'utf8', maxBuffer: 1 << 24 });
    rss.push(Number(readFileSync(timeOut, 'utf8').trim().split('\n').pop()) / 1024);
    t.equal(parseDump(out).get('/data')?.digest, want, `${mib} MiB file: fs-verity digest (hashed on the worker thread)`);
  }
  t.ok(rss[1]! < 200, `peak RSS ${rss[1]!.toFixed(0)} MiB for a 320 MiB file`);
  t.ok(rss[1]! - rss[0]! < 48, `5× the data, RSS ${rss[0]!.toFixed(0)} → ${rss[1]!.toFixed(0)} MiB`);
});

t.test('bad input: clear errors, no output file', async (t) => {
  const dir = tmp(t);
  const tars = await makeRichLayers(join(dir, 'src'));
  const out = join(dir, 'out.cfs');
  const noOutput = () => t.same(readdirSync(dir).filter((f) => f.startsWith('out')), [], 'no output (or temp) file');

  let r = ocli('composefs', `oci:${join(dir, 'nope')}:latest`, '-o', out);
  t.not(r.status, 0);
  t.match(r.stderr, /^error: .*nope/m, 'unknown layout named');
  noOutput();
  r = ocli('composefs', 'bogus:thing', '-o', out);
  t.equal(r.status, 2, 'invalid reference is a usage error');
  t.match(r.stderr, /error: .*bogus:thing/);
  const img = join(dir, 'img');
  const ref = await buildImage(img, tars);
  r = ocli('composefs', `oci:${img}:other`, '-o', out);
  t.match(r.stderr, /no image tagged "other"/);
  r = ocli('composefs');
  t.equal(r.status, 2);
  t.match(r.stderr, /needs an IMGREF, --dir PATH or --repo R REV/);

  // Corrupt layer blob: one flipped byte in the middle of layer 0.
  const manifest = JSON.parse(readFileSync(join(img, 'blobs/sha256', (JSON.parse(readFileSync(join(img, 'index.json'), 'utf8')) as { manifests: { digest: string }[] }).manifests[0]!.digest.slice(7)), 'utf8')) as { layers: { digest: string }[] };
  const blob = join(img, 'blobs/sha256', manifest.layers[0]!.digest.slice(7));
  const bytes = readFileSync(blob);
  bytes[bytes.length >> 1] ^= 0xff;
  writeFileSync(blob, bytes);
  r = ocli('composefs', ref, '-o', out);
  t.equal(r.status, 1);
  t.match(r.stderr, new RegExp(`layer 0.*${manifest.layers[0]!.digest.slice(7, 19)}`), `corrupt layer named: ${r.stderr.trim()}`);
  noOutput();

  // Layers with valid digests but bad tar content.
  const cases: [string, (p: string) => Promise<void> | void, RegExp][] = [
    ['truncated tar', (p) => writeFileSync(p, readFileSync(tars[1]!).subarray(0, 1536)), /layer 0 .*truncated|end-of-archive/],
    ['bad header checksum', (p) => {
      const b = Buffer.from(readFileSync(tars[1]!));
      b[10] ^= 1;
      writeFileSync(p, b);
    }, /layer 0 .*checksum/],
    ['hardlink to nothing', async (p) => void (await craftTar(p, [{ name: 'a/link', type: 'link', linkname: 'missing' }])), /layer 0 .*\/a\/link → \/missing: target does not exist/],
    ['path with ..', async (p) => void (await craftTar(p, [{ name: 'a/../../etc/passwd', content: 'x' }])), /layer 0 .*"a\/..\/..\/etc\/passwd".*\.\./],
    ['whiteout of .', async (p) => void (await craftTar(p, [{ name: 'usr/f', content: 'x' }, { name: 'usr/.wh..', content: '' }])), /layer 0 .*"usr\/\.wh\.\.": whiteout of "\."/],
    ['whiteout of ..', async (p) => void (await craftTar(p, [{ name: 'usr/.wh...', content: '' }])), /layer 0 .*"usr\/\.wh\.\.\.": whiteout of "\.\."/],
    ['file under a symlink', async (p) => void (await craftTar(p, [{ name: 'lib', type: 'symlink', linkname: 'usr/lib' }, { name: 'lib/x', content: 'x' }])), /layer 0 .*\/lib\/x: parent \/lib is not a directory \(a symlink/],
    // Longer than PATH_MAX: an image no reader could walk (--dump, composefs-info) is not made.
    ['name beyond PATH_MAX', async (p) => void (await craftTar(p, [{ name: `${'a/'.repeat(2100)}f`, content: 'x' }])), /layer 0 .*tar entry name "a\/a\/.*exceeds limit maxPathLength \(4201 > 4096/],
    ['symlink target beyond PATH_MAX', async (p) => void (await craftTar(p, [{ name: 'l', type: 'symlink', linkname: 'x'.repeat(5000) }])), /layer 0 .*link target of "l".*exceeds limit maxPathLength \(5000 > 4096/],
  ];
  for (const [name, make, re] of cases) {
    const p = join(dir, `${name.replace(/\W/g, '_')}.tar`);
    await make(p);
    const bad = await buildImage(join(dir, `bad-${name.replace(/\W/g, '_')}`), [p], { compression: 'gzip' });
    r = ocli('composefs', bad, '-o', out);
    t.equal(r.status, 1, name);
    t.match(r.stderr, re, `${name}: ${r.stderr.trim()}`);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    noOutput();
  }
  t.ok(!existsSync(out));
  // -o naming a directory or a path in a missing directory: refused up front, naming the path
  // (not the temporary file beside it), nothing written.
  const outDir = join(dir, 'out-dir');
  mkdirSync(outDir);
  r = ocli('composefs', ref, '-o', outDir);
  t.equal(r.status, 1);
  t.match(r.stderr, new RegExp(`^error: cannot write image ${outDir}: it is a directory$`, 'm'));
  t.same(readdirSync(outDir), [], 'the directory is left as it was');
  r = ocli('composefs', ref, '-o', join(dir, 'no-such-dir', 'x.cfs'));
  t.equal(r.status, 1);
  t.match(r.stderr, new RegExp(`^error: cannot write image ${join(dir, 'no-such-dir', 'x.cfs')}: directory ${join(dir, 'no-such-dir')} does not exist$`, 'm'));
  t.notMatch(r.stderr, /\.tmp-/, 'no temporary name in the message');
  // The cap is the importers' one: --limit raises it.
  const deep = await buildImage(join(dir, 'deep'), [join(dir, 'name_beyond_PATH_MAX.tar')], { compression: 'gzip' });
  t.match(ok(t, '--limit', 'maxPathLength=5000', 'composefs', deep), /^[0-9a-f]{64}$/m, '--limit maxPathLength=5000 accepts it');
});

t.test('scanLayer: whiteouts are order-independent within a layer', async (t) => {
  const dir = tmp(t);
  const base = await craftTar(join(dir, 'base.tar'), [
    { name: 'd/', type: 'directory' },
    { name: 'd/old', content: 'old' },
    { name: 'd/sub/', type: 'directory' },
    { name: 'd/sub/lower', content: 'lower' },
  ]);
  const orders: [string, { name: string; type?: 'directory'; content?: string }[]][] = [
    ['marker first', [{ name: 'd/.wh..wh..opq' }, { name: 'd/sub/', type: 'directory' }, { name: 'd/sub/upper', content: 'u' }]],
    ['marker last', [{ name: 'd/sub/', type: 'directory' }, { name: 'd/sub/upper', content: 'u' }, { name: 'd/.wh..wh..opq' }]],
  ];
  const dumps = [];
  for (const [name, entries] of orders) {
    const top = await craftTar(join(dir, `${name}.tar`), entries);
    const ref = await buildImage(join(dir, name.replace(/ /g, '-')), [base, top]);
    const d = parseDump(ok(t, 'composefs', ref, '--dump'));
    t.same([...d.keys()].filter((k) => k.startsWith('/d')), ['/d', '/d/sub', '/d/sub/upper'], `${name}: lower entries hidden, this layer's kept`);
    dumps.push(ok(t, 'composefs', ref));
  }
  t.equal(dumps[0], dumps[1]);
  // The scan holds no file data: only metadata and inline (≤ 64 bytes) content.
  const { createReadStream } = await import('node:fs');
  const s = await scanLayer(createReadStream(tars2(dir)), 'big file layer');
  t.equal(s.entries, 1);
  const op = s.ops[0]!;
  t.ok(op.op === 'put' && op.inode.content === undefined && op.inode.digest?.length === 32, 'big file: digest only');
});

t.test('a symlink is 0777 whatever mode its tar header gives, as extraction makes it', async (t) => {
  const dir = tmp(t);
  const digests = [];
  for (const mode of [0o644, 0o777]) {
    const tar = await craftTar(join(dir, `${mode}.tar`), [{ name: 'lnk', type: 'symlink', linkname: 'target', mode }]);
    const ref = await buildImage(join(dir, `img${mode}`), [tar]);
    t.equal(parseDump(ok(t, 'composefs', ref, '--dump')).get('/lnk')?.mode, '120777', `header mode ${mode.toString(8)}`);
    digests.push(ok(t, 'composefs', ref).trim());
    // GNU tar extracts it (as root) with 0777 too: the directory path agrees.
    const x = join(dir, `x${mode}`);
    mkdirSync(x);
    sh(`tar -C '${x}' -xpf '${tar}' && touch -h -d @${T0} '${x}' && chmod 555 '${x}'`);
    t.equal(ok(t, 'composefs', '--dir', x).trim(), digests.at(-1), `header mode ${mode.toString(8)}: = the extracted directory`);
  }
  t.equal(digests[0], digests[1]);
});

function tars2(dir: string): string {
  sh(`mkdir -p '${dir}/one' && head -c 100000 /dev/urandom > '${dir}/one/f'`);
  return tarLayer(join(dir, 'one'), join(dir, 'one.tar'), ['f'], { recursive: false });
}

t.test('boot variant of an ostree commit = ostree checkout --composefs of the emptied tree (ostree 2026.4)', async (t) => {
  const dir = tmp(t);
  for (const [name, boot] of [['full', true], ['emptied', false]] as const) {
    const d = join(dir, name);
    sh(`mkdir -p '${d}/usr/bin' '${d}/etc' '${d}/boot/loader/entries' '${d}/sysroot/ostree' && chmod 0700 '${d}/boot' \
      && echo tool > '${d}/usr/bin/tool' && echo conf > '${d}/etc/conf'`);
    if (boot) sh(`echo kernel > '${d}/boot/vmlinuz' && echo 'title x' > '${d}/boot/loader/entries/a.conf' && echo y > '${d}/sysroot/ostree/x'`);
    else sh(`rm -rf '${d}/boot/loader' '${d}/sysroot/ostree'`);
  }
  const repo = join(dir, 'repo');
  oracle(['ostree', 'init', `--repo=${repo}`, '--mode=bare-user']);
  for (const name of ['full', 'emptied']) oracle(['ostree', 'commit', `--repo=${repo}`, '-b', name, `--tree=dir=${join(dir, name)}`, '--owner-uid=0', '--owner-gid=0']);
  oracle(['sh', '-c', `cd '${dir}' && ostree checkout --repo='${repo}' --composefs emptied oracle.cfs`]);
  const ours = join(dir, 'ours.cfs');
  const digest = ok(t, 'composefs', '--repo', repo, 'full', '--boot-variant', '-o', ours, '--print-digest').trim();
  t.ok(readFileSync(ours).equals(readFileSync(join(dir, 'oracle.cfs'))), 'byte-identical to the oracle image of the emptied tree');
  t.not(ok(t, 'composefs', '--repo', repo, 'full').trim(), digest, 'without --boot-variant: another digest');
  t.equal(ok(t, 'composefs', '--repo', repo, 'emptied').trim(), digest);
  const r = cli(['composefs', 'diff', `repo:${repo}:full`, `repo:${repo}:emptied`, '--boot-variant']);
  t.equal(r.status, 0, `diff with --boot-variant: ${r.stdout}`);
  const e = cli(['composefs', '--repo', repo, 'full', '--xattrs', 'all']);
  t.equal(e.status, 2);
});
