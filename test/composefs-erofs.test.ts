/**
 * EROFS writer: the worked examples of composefs-format.md §7 (sha256 and fs-verity digests from
 * the spec), crafted cases for each writer rule of §4/§5 compared byte for byte with mkcomposefs
 * 1.0.8 (oracle chroot, one batch), the library API, and the `composefs` CLI (exit codes, no
 * partial image, stdin/stdout, --print-digest, dump).
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { parseDumpfileSync } from '../src/composefs/dumpfile/reader.js';
import { writeDumpfile } from '../src/composefs/dumpfile/writer.js';
import { buildErofs, type ErofsWriteOptions } from '../src/composefs/erofs/writer.js';
import { EROFS_SUPER_OFFSET, SUPERBLOCK, COMPOSEFS_HEADER, LCFS_EROFS_FLAGS_HAS_ACL } from '../src/composefs/erofs/format.js';
import { composefsDigest, mkcomposefs } from '../src/composefs/index.js';
import { fsverityDigest } from '../src/composefs/fsverity.js';
import { TreeNode } from '../src/tree/model.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ORACLE = join(ROOT, 'scripts', 'oracle.sh');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const img = (dump: string, opts: ErofsWriteOptions = {}): Buffer => buildErofs(parseDumpfileSync(Buffer.from(dump, 'latin1')), opts).toBuffer();
const R = '/ 4096 40755 2 0 0 0 0.0 - - -\n';
const D64 = '5a'.repeat(32);

function cli(args: string[], input?: Buffer) {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, maxBuffer: 256 << 20 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr.toString() };
}

function tmp(t: { teardown(f: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'cfs-erofs-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

// -------------------------------------------------------------------------------------------------
// §7 worked examples

t.test('§7.1 minimal image', async (t) => {
  const b = img('/ 4096 40755 2 0 0 0 0.0 - - -\n');
  t.equal(b.length, 16384);
  t.equal(sha(b), 'c3dc5b0fc4afb0693a95e017fe5815e1f88f204d485df617541b5ea659aefb8b');
  t.equal(fsverityDigest(b).toString('hex'), '8f589e8f57ecb88823736b0d857ddca1e1068a23e264fad164b28f7038eb3682');
  const sb = EROFS_SUPER_OFFSET;
  t.equal(b.readUInt16LE(sb + SUPERBLOCK.rootNid), 36, 'root nid');
  t.equal(Number(b.readBigUInt64LE(sb + SUPERBLOCK.inos)), 257, 'root + 256 stubs');
  t.equal(b.readUInt32LE(sb + SUPERBLOCK.blocks), 4);
  t.equal(b.readUInt32LE(sb + SUPERBLOCK.xattrBlkaddr), 2);
});

t.test('§7.2 simple (composefs-rs fixture)', async (t) => {
  const dump =
    '/ 0 40755 2 0 0 0 0.0 - - -\n' +
    '/blkdev 0 60000 1 0 0 123 0.0 - - -\n' +
    '/chrdev 0 20000 1 0 0 123 0.0 - - -\n' +
    '/fifo 0 10000 1 0 0 0 0.0 - - -\n' +
    `/regular-external 1234 100000 1 0 0 0 0.0 5a/${'5a'.repeat(31)} - ${D64}\n` +
    '/regular-inline 4 100000 1 0 0 0 0.0 - hihi -\n' +
    '/socket 0 140000 1 0 0 0 0.0 - - -\n' +
    '/symlink 7 120000 1 0 0 0 0.0 /target - -\n';
  t.equal(fsverityDigest(img(dump)).toString('hex'), '9f3f5620ee0c54708516467d0d58741e7963047c7106b245d94c298259d0fa01');
});

const EX1 =
  '/ 4096 40755 3 0 0 0 1700000000.0 - - - security.selinux=system_u:object_r:root_t:s0\\x00 user.a=1\n' +
  '/dir 4096 40700 2 1000 1000 0 1700000000.5 - - - user.a=1\n' +
  '/dir/inline.txt 6 100644 1 1000 1000 0 1700000001.0 - hello\\n - user.a=1\n' +
  '/dir/external.bin 100000 100644 2 1000 1000 0 1700000002.123456789 ab/cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789 - abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789 trusted.overlay.opaque=y\n' +
  '/dir/hl 100000 @100644 2 1000 1000 0 1700000002.123456789 /dir/external.bin - -\n' +
  '/link 7 120777 1 0 0 0 1700000000.0 dir/hl - -\n' +
  '/fifo 0 10644 1 70000 0 0 1700000000.0 - - -\n' +
  '/null 0 20666 1 0 0 259 1700000000.0 - - -\n';

t.test('§7.3 mixed example ex1', async (t) => {
  const b = img(EX1);
  t.equal(b.length, 24576);
  t.equal(sha(b), '48d56a128cd5b80f44200b406f71c47590a20e5bdab18a33f25bda80a55d2b9e');
  t.equal(fsverityDigest(b).toString('hex'), '9004f5427a09476a2bd1f7bf08a26345054c1c2f6de28e28cfd3e8a3e01aa768');
  const sb = EROFS_SUPER_OFFSET;
  t.equal(Number(b.readBigUInt64LE(sb + SUPERBLOCK.buildTime)), 1700000000, 'build_time = min mtime');
  t.equal(b.readUInt32LE(sb + SUPERBLOCK.xattrBlkaddr), Math.floor(18336 / 4096), 'inodesEnd 18336');
  t.equal(b.readUInt32LE(COMPOSEFS_HEADER.composefsVersion), 0);
});

t.test('§7.4 whiteout and version selection (ex2)', async (t) => {
  const ex2 = '/ 4096 40755 2 0 0 0 0.0 - - -\n/wh 0 20000 1 0 0 0 0.0 - - -\n';
  const v1 = 'b205d5a8af9dfc26322ac09bfe88f27aac1ced90b807a79ecc7d811535cceccb';
  t.equal(sha(img(ex2)), v1, 'default (0..1) auto-upgrades to 1');
  t.equal(fsverityDigest(img(ex2)).toString('hex'), 'c3447b7f99006c71a5083334501b8542d81a3ecc8e676f968c3921d59efc7c03');
  const v0 = img(ex2, { minVersion: 0, maxVersion: 0 });
  t.equal(sha(v0), '237bfefab32d4099c40a11101016bb40c128906d7a50afae2d62961a333a1a23', '0..0');
  t.equal(fsverityDigest(v0).toString('hex'), '0895f6144a2bd3ce3e18088034a333ddd2f515346d597bf751c534888409f3d3');
  t.equal(sha(img(ex2, { minVersion: 1 })), v1, '--min-version=1');
  t.equal(img(ex2).readUInt32LE(COMPOSEFS_HEADER.composefsVersion), 1);
  t.equal(v0.readUInt32LE(COMPOSEFS_HEADER.composefsVersion), 0);
  t.throws(() => img(ex2, { maxVersion: 2 }), { name: 'ComposefsOptionsError' });
  t.throws(() => img(ex2, { minVersion: -1 }), { name: 'ComposefsOptionsError' }, 'negative = huge uint32');
});

// -------------------------------------------------------------------------------------------------
// Writer rules, byte for byte against mkcomposefs

const names = (n: number, len: number, prefix = ''): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(len - prefix.length, '0')}`);

interface WCase {
  name: string;
  dump: string;
  args?: string[];
  /** expected failure (ComposefsWriteError code) */
  code?: string;
}

const WCASES: WCase[] = [
  // §4.6 symlinks: header+xattrs+target reaching 4096 spill into a block; never cross a block
  { name: 'symlink 4063 (compact, inline)', dump: `${R}/l 4063 120777 1 0 0 0 0.0 ${'t'.repeat(4063)} - -\n` },
  { name: 'symlink 4064 spills (32+4064 = 4096)', dump: `${R}/l 4064 120777 1 0 0 0 0.0 ${'t'.repeat(4064)} - -\n` },
  { name: 'symlink 4095 spills', dump: `${R}/l 4095 120777 1 0 0 0 0.0 ${'t'.repeat(4095)} - - user.x=1\n` },
  {
    name: 'symlinks realigned to the next block',
    dump: R + names(12, 3, 'l').map((n) => `/${n} 3000 120777 1 0 0 0 0.0 ${'t'.repeat(3000)} - -\n`).join(''),
  },
  // §4.5 inline content tails
  ...[1, 2047, 2048, 2049, 4095, 4096, 4097, 5000].map((n) => ({
    name: `inline content ${n}`,
    dump: `${R}/a 0 100644 1 0 0 0 0.0 - - -\n/f ${n} 100644 1 0 0 0 0.0 - ${'c'.repeat(n)} -\n/g 10 100644 1 0 0 0 0.0 - ${'d'.repeat(10)} -\n`,
  })),
  {
    name: 'inline tails never cross a block (padding rounded to 32)',
    dump: R + names(20, 3, 'f').map((n, i) => `/${n} ${1500 + i * 17} 100644 1 0 0 0 0.0 - ${'x'.repeat(1500 + i * 17)} -\n`).join(''),
  },
  // §5.8 external files: chunk bits and counts
  ...['1', '4096', '4097', '8796093022208', '8796093022209', '9007199254740992', '18446744073709551615'].map((size) => ({
    name: `external ${size}`,
    dump: `${R}/e ${size} 100644 1 0 0 0 0.0 ab/cd - ${D64}\n`,
  })),
  { name: 'bigfile: 1024 chunks do not fit → a full 0xff block', dump: `${R}/bigfile 9000000000000000 100644 1 0 0 0 0.0 - - -\n` },
  { name: 'should-fail-too-big: more than 1024 chunks', dump: `${R}/bigfile 9500000000000000 100644 1 0 0 0 0.0 - - -\n`, code: 'EFBIG' },
  { name: 'external without digest/payload: empty metacopy, no redirect', dump: `${R}/e 10 100644 1 0 0 0 0.0 - - -\n/p 10 100644 1 0 0 0 0.0 /abs - -\n` },
  { name: 'same content twice: shared metacopy and redirect', dump: `${R}/a 10 100644 1 0 0 0 0.0 ab/cd - ${D64}\n/b 10 100644 1 0 0 0 0.0 ab/cd - ${D64}\n` },
  // §5.7 directories
  { name: 'names sorting before .', dump: R + ['-', ',', '+', ' a', '!x', '.a', '..a', '.-', '#'].map((n) => `/${n.replace(' ', '\\x20')} 0 100644 1 0 0 0 0.0 - - -\n`).join('') },
  ...[60, 61, 62, 170, 171, 340, 341].map((n) => ({
    name: `directory of ${n} entries (block/tail boundaries)`,
    dump: `${R}/d 0 40755 2 0 0 0 0.0 - - -\n` + names(n, 12).map((x) => `/d/${x} 0 100644 1 0 0 0 0.0 - - -\n`).join(''),
  })),
  { name: 'names of 255 bytes', dump: `${R}/d 0 40755 2 0 0 0 0.0 - - -\n` + names(40, 255).map((x) => `/d/${x} 0 100644 1 0 0 0 0.0 - - -\n`).join('') },
  { name: 'root entries named like stubs suppress them', dump: `${R}/00 0 100644 1 0 0 0 0.0 - - -\n/7f 0 40755 2 0 0 0 0.0 - - -\n/ff 0 @100644 1 0 0 0 0.0 /00 - -\n` },
  // §4.4 shared xattrs
  {
    name: 'more than 128 shared xattrs on one inode',
    dump: R + ['a', 'b'].map((f) => `/${f} 0 100644 1 0 0 0 0.0 - - - ${Array.from({ length: 140 }, (_, i) => `user.k${i}=${i % 3}`).join(' ')}\n`).join(''),
  },
  {
    name: 'shared table order: key desc, longer value first',
    dump: R + ['a', 'b'].map((f) => `/${f} 0 100644 1 0 0 0 0.0 - - - user.z=1 user.z2=22 trusted.q=abc security.s=x system.posix_acl_access=\n`).join('') + '/c 0 100644 1 0 0 0 0.0 - - - user.z=22\n/d 0 100644 1 0 0 0 0.0 - - - user.z=22\n',
  },
  { name: 'every prefix, acl flag, lustre and unknown prefixes', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - lustre.a=1 foo.b=2 system.posix_acl_default=3 system.posix_acl_defaultx=4 user.=5 trusted.=6 security.=7\n` },
  { name: 'root selinux is copied to the stubs', dump: '/ 4096 40755 2 0 0 0 5.7 - - - security.selinux=root_t\\x00\n' },
  // §4.2 overlay xattrs and whiteouts
  { name: 'trusted.overlay.* escaped, user.overlay.* kept', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - trusted.overlay.redirect=x trusted.overlay.overlay.y=1 user.overlay.z=2 trusted.overlay.=3\n` },
  { name: 'payload starting with / gives // redirect', dump: `${R}/e 5 100644 1 0 0 0 0.0 /x/y - -\n` },
  ...[[], ['--min-version=0', '--max-version=0'], ['--min-version=1']].map((args) => ({
    name: `whiteouts in root and subdir (${args.join(' ') || 'default'})`,
    args,
    dump: `${R}/w 0 20644 1 0 0 0 0.0 - - -\n/d 0 40755 2 0 0 0 0.0 - - - trusted.overlay.opaque=z user.overlay.opaque=q\n/d/w1 5 20000 1 0 0 0 0.0 - - -\n/d/w2 0 20000 1 0 0 4294967296 0.0 - - -\n`,
  })),
  { name: 'whiteout parent with escaped whiteouts xattr (clone budget wraps: ERANGE)', dump: `${R}/d 0 40755 2 0 0 0 0.0 - - - trusted.overlay.whiteouts=abc user.x=1\n/d/w 0 20644 1 0 0 0 0.0 - - -\n`, code: 'ERANGE' },
  { name: 'same with an empty value (wraps back: fine)', dump: `${R}/d 0 40755 2 0 0 0 0.0 - - - trusted.overlay.whiteouts= user.x=\n/d/w 0 20644 1 0 0 0 0.0 - - -\n` },
  { name: 'writer additions next to a full budget are fine (clone starts at 0)', dump: `${R}/e 100 100644 1 0 0 0 0.0 ab/cd - ${D64} user.big=${'v'.repeat(32742 - 2)}\n` },
  // §4.5 compact vs extended
  {
    name: 'extended inodes: uid/gid/nlink > 65535, other mtime, nsec, negative seconds',
    dump: `/ 4096 40755 2 0 0 0 -5.3 - - -\n/a 0 100644 65536 0 0 0 -5.3 - - -\n/b 0 100644 1 65536 0 0 -5.3 - - -\n/c 0 100644 1 0 4294967296 0 -5.3 - - -\n/d 0 100644 1 0 0 0 -5.4 - - -\n/e 0 100644 1 0 0 0 9223372036854775808.0 - - -\n/f 5000000000 10644 1 0 0 0 -5.3 - - -\n`,
  },
  { name: 'devices: rdev low 32 bits', dump: `${R}/b 0 60600 1 0 0 4294967297 0.0 - - -\n/c 0 20600 1 0 0 66048 0.0 - - -\n` },
  // hardlinks
  { name: 'hardlinks (chain, to a symlink, to a directory: quirk)', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - -\n/d 0 40755 2 0 0 0 0.0 - - -\n/h1 0 @100644 1 0 0 0 0.0 /f - -\n/h2 0 @100644 1 0 0 0 0.0 /h1 - -\n/l 1 120777 1 0 0 0 0.0 x - -\n/hl 0 @120777 1 0 0 0 0.0 /l - -\n/hd 0 @100644 1 0 0 0 0.0 /d - -\n` },
  { name: 'hardlink cycle', dump: `${R}/a 0 @100644 1 0 0 0 0.0 /b - -\n/b 0 @100644 1 0 0 0 0.0 /a - -\n`, code: 'ELOOP' },
  { name: 'version 1 max 0 → 1', args: ['--min-version=1', '--max-version=0'], dump: R },
];

t.test('writer rules: same bytes (or same failure) as mkcomposefs', async (t) => {
  const dir = tmp(t);
  const script = [`cd ${dir}`];
  WCASES.forEach((c, i) => {
    writeFileSync(join(dir, `${i}.dump`), Buffer.from(c.dump, 'latin1'));
    script.push(`mkcomposefs ${(c.args ?? []).join(' ')} --from-file ${i}.dump ${i}.img 2>${i}.err; echo $? >${i}.rc`);
  });
  writeFileSync(join(dir, 'run.sh'), script.join('\n') + '\n');
  execFileSync(ORACLE, ['run', 'sh', join(dir, 'run.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  WCASES.forEach((c, i) => {
    const rc = readFileSync(join(dir, `${i}.rc`), 'utf8').trim();
    const opts: ErofsWriteOptions = {};
    for (const a of c.args ?? []) {
      const [k, v] = a.replace(/^--/, '').split('=');
      if (k === 'min-version') opts.minVersion = Number(v);
      else opts.maxVersion = Number(v);
    }
    if (c.code) {
      t.not(rc, '0', `${c.name}: mkcomposefs fails (${readFileSync(join(dir, `${i}.err`), 'utf8').trim()})`);
      t.throws(() => img(c.dump, opts), { name: 'ComposefsWriteError', code: c.code }, `${c.name}: ${c.code}`);
      return;
    }
    t.equal(rc, '0', `${c.name}: mkcomposefs accepts`);
    const ours = img(c.dump, opts);
    const theirs = readFileSync(join(dir, `${i}.img`));
    t.equal(sha(ours), sha(theirs), `${c.name}: identical image (${ours.length} bytes)`);
    // the image streams through a small window too (metadata emitted in 4 KiB pieces)
    const small = Buffer.concat([...buildErofs(parseDumpfileSync(Buffer.from(c.dump, 'latin1')), opts).chunks(1)]);
    t.equal(sha(small), sha(theirs), `${c.name}: same bytes through a 4 KiB window`);
  });
});

t.test('header flags and fields', async (t) => {
  const acl = img(`${R}/f 0 100644 1 0 0 0 0.0 - - - system.posix_acl_access=x\n`);
  t.equal(acl.readUInt32LE(COMPOSEFS_HEADER.flags), LCFS_EROFS_FLAGS_HAS_ACL);
  const noacl = img(`${R}/f 0 100644 1 0 0 0 0.0 - - - system.posix_acl_accessx=x\n`);
  t.equal(noacl.readUInt32LE(COMPOSEFS_HEADER.flags), 0, 'only the exact names set HAS_ACL');
});

t.test('the caller’s tree is not modified', async (t) => {
  const tree = parseDumpfileSync(Buffer.from(EX1 + '/wh 0 20000 1 0 0 0 0.0 - - - trusted.overlay.x=1\n'));
  const before = writeDumpfile(tree);
  const a = buildErofs(tree).toBuffer();
  t.same(writeDumpfile(tree), before);
  t.same(buildErofs(tree).toBuffer(), a, 'building twice gives the same image');
});

t.test('trees from other sources: validation', async (t) => {
  const root = new TreeNode(Buffer.alloc(0), 0o40755);
  const bad = new TreeNode('x', 0o644);
  root.addChild(bad);
  t.throws(() => buildErofs(root), { code: 'EINVAL' }, 'no file type');
  bad.mode = 0o100644;
  bad.size = 3n;
  bad.content = Buffer.from('ab');
  t.throws(() => buildErofs(root), { code: 'EINVAL' }, 'content length ≠ size');
  bad.content = Buffer.from('abc');
  t.doesNotThrow(() => buildErofs(root));
  const lnk = new TreeNode('l', 0o120777);
  root.addChild(lnk);
  t.throws(() => buildErofs(root), { code: 'EINVAL' }, 'symlink without target');
  lnk.payload = Buffer.from('t');
  bad.xattrs.push({ key: Buffer.from('user.a'), value: Buffer.alloc(1) }, { key: Buffer.from('user.a'), value: Buffer.alloc(2) });
  t.throws(() => buildErofs(root), { code: 'EINVAL' }, 'duplicate xattr');
  bad.xattrs = [{ key: Buffer.alloc(256, 0x61), value: Buffer.alloc(1) }];
  t.throws(() => buildErofs(root), { code: 'ERANGE' }, 'xattr name too long');
  bad.xattrs = [];
  const foreign = new TreeNode('h', 0o100644);
  foreign.linkTo = new TreeNode('elsewhere', 0o100644);
  root.addChild(foreign);
  t.throws(() => buildErofs(root), { code: 'EINVAL' }, 'hardlink to a node outside the tree');
});

// -------------------------------------------------------------------------------------------------
// Library API

t.test('mkcomposefs(), composefsDigest() and the oracle’s --print-digest agree', async (t) => {
  const dir = tmp(t);
  writeFileSync(join(dir, 'ex1.dump'), EX1);
  const cdigest = execFileSync(ORACLE, ['run', 'mkcomposefs', '--print-digest-only', '--from-file', join(dir, 'ex1.dump')], { encoding: 'utf8' }).trim();
  const tree = parseDumpfileSync(Buffer.from(EX1));
  t.equal(composefsDigest(tree).toString('hex'), cdigest);
  const r = await mkcomposefs(tree, { digest: true });
  t.equal(r.digest!.toString('hex'), cdigest);
  t.equal(sha(r.image!), '48d56a128cd5b80f44200b406f71c47590a20e5bdab18a33f25bda80a55d2b9e');
  const out = join(dir, 'out.img');
  const w = await mkcomposefs(tree, { output: out, digest: true });
  t.equal(w.size, 24576);
  t.equal(sha(readFileSync(out)), sha(r.image!));
  t.same(readdirSync(dir).sort(), ['ex1.dump', 'out.img'], 'no temporary file left');
});

// -------------------------------------------------------------------------------------------------
// CLI

t.test('CLI: composefs mkimage / dump', async (t) => {
  t.ok(existsSync(CLI), 'built CLI (npx tsc -p .)');
  const dir = tmp(t);
  const dump = join(dir, 'ex1.dump');
  writeFileSync(dump, EX1);

  const h = cli(['composefs', 'mkimage', '--help']);
  t.equal(h.status, 0);
  t.match(h.stdout.toString(), /--from-dump/);
  t.equal(cli(['composefs', 'dump', '--help']).status, 0);
  t.equal(cli(['composefs', '--help']).status, 0);

  const out = join(dir, 'ex1.img');
  const r = cli(['composefs', 'mkimage', '--from-dump', dump, out, '--print-digest']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.toString().trim(), '9004f5427a09476a2bd1f7bf08a26345054c1c2f6de28e28cfd3e8a3e01aa768');
  t.equal(sha(readFileSync(out)), '48d56a128cd5b80f44200b406f71c47590a20e5bdab18a33f25bda80a55d2b9e');

  // stdin → stdout, version options
  const ex2 = '/ 4096 40755 2 0 0 0 0.0 - - -\n/wh 0 20000 1 0 0 0 0.0 - - -\n';
  const s = cli(['composefs', 'mkimage', '--from-dump', '-', '-', '--min-version', '0', '--max-version', '0'], Buffer.from(ex2));
  t.equal(s.status, 0, s.stderr);
  t.equal(sha(s.stdout), '237bfefab32d4099c40a11101016bb40c128906d7a50afae2d62961a333a1a23');
  const big = cli(['composefs', 'mkimage', '--from-dump', '-', '-', '--max-version', '4294967297'], Buffer.from(ex2));
  t.equal(sha(big.stdout), 'b205d5a8af9dfc26322ac09bfe88f27aac1ced90b807a79ecc7d811535cceccb', 'int truncation like mkcomposefs: 4294967297 → 1');

  // dump: like composefs-info dump
  const d = cli(['composefs', 'dump', out]);
  t.equal(d.status, 0, d.stderr);
  const cinfo = execFileSync(ORACLE, ['run', 'composefs-info', 'dump', out]);
  t.equal(d.stdout.toString('latin1'), cinfo.toString('latin1'));
});

t.test('CLI: bad input exits non-zero, names line and field, leaves no image', async (t) => {
  const dir = tmp(t);
  const out = join(dir, 'out.img');
  const bad = join(dir, 'bad.dump');
  writeFileSync(bad, `${R}/a 0 100644 1 0 0 0 0.0 - - -\n/b 12x 100644 1 0 0 0 0.0 - - -\n`);
  const r = cli(['composefs', 'mkimage', '--from-dump', bad, out]);
  t.not(r.status, 0);
  t.match(r.stderr, /line 3, field SIZE: Invalid integer 12x/);
  t.notOk(existsSync(out), 'no image written');
  t.same(readdirSync(dir), ['bad.dump'], 'no temporary file left');

  // an existing image is left untouched by a failing run
  writeFileSync(out, 'old');
  const tooBig = join(dir, 'big.dump');
  writeFileSync(tooBig, `${R}/bigfile 9500000000000000 100644 1 0 0 0 0.0 - - -\n`);
  const r2 = cli(['composefs', 'mkimage', '--from-dump', tooBig, out]);
  t.not(r2.status, 0);
  t.match(r2.stderr, /\/bigfile.*File too large/);
  t.equal(readFileSync(out, 'utf8'), 'old');

  const strict = spawnSync(process.execPath, [CLI, 'composefs', 'mkimage', '--from-dump', '-', out], {
    input: `${R}/f 0 100644 1 0 0 0 0.0 - - -`,
    env: { ...process.env, CFS_PARSE_STRICT: '1' },
  });
  t.not(strict.status, 0);
  t.match(strict.stderr.toString(), /line 2: Missing trailing newline/);

  t.not(cli(['composefs', 'mkimage', '--from-dump', join(dir, 'missing.dump'), out]).status, 0, 'missing dump');
  t.not(cli(['composefs', 'mkimage', '--from-dump', bad, out, '--max-version', '2']).status, 0, 'version 2');
  t.not(cli(['composefs', 'mkimage', '--from-dump', bad, out, '--min-version', 'x']).status, 0, 'bad version');
  t.not(cli(['composefs', 'mkimage', out]).status, 0, '--from-dump is required');
  t.not(cli(['composefs', 'dump', join(dir, 'missing.img')]).status, 0, 'dump of a missing image');
  t.equal(readFileSync(out, 'utf8'), 'old');
});

// -------------------------------------------------------------------------------------------------
// Upstream assets (optional: COMPOSEFS_ASSETS=<containers/composefs tests/assets>)

t.test('containers/composefs tests/assets checksums', { skip: !process.env['COMPOSEFS_ASSETS'] && 'set COMPOSEFS_ASSETS' }, async (t) => {
  const dir = process.env['COMPOSEFS_ASSETS']!;
  const lax = new Set(['no-newline.dump', 'longlink.dump', 'honggfuzz-longlink-unterminated.dump']);
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.sha256'))) {
    const asset = f.slice(0, -7);
    if (!existsSync(join(dir, asset)) || readFileSync(join(dir, asset)).length === 0) continue;
    let data = readFileSync(join(dir, asset));
    if (asset.endsWith('.gz')) data = gunzipSync(data);
    const v = existsSync(join(dir, `${asset}.version`)) ? Number(readFileSync(join(dir, `${asset}.version`), 'utf8')) : undefined;
    const opts = v === undefined ? {} : { minVersion: v, maxVersion: v };
    const b = buildErofs(parseDumpfileSync(data, { strict: !lax.has(asset) }), opts).toBuffer();
    t.equal(sha(b), readFileSync(join(dir, f), 'utf8').slice(0, 64), asset);
  }
});
