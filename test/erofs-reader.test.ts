/**
 * EROFS/composefs reader against the oracle: images are built by the real `mkcomposefs --from-file`
 * (1.0.8, sid chroot) from dumpfiles written here, read back by our reader, printed with a small
 * local copy of composefs-info's dump formatter (§2.10, tools/composefs-info.c dump_node) and
 * compared byte-for-byte with `composefs-info dump IMG`. Then hostile images: bad magic, truncation,
 * seeded random byte flips, directory cycles, shared directory blocks, deep nesting.
 */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { TreeNode } from '../src/tree/model.js';
import {
  ErofsFormatError,
  readErofsImage,
  readErofsImageSync,
  readErofsImageWithInfo,
} from '../src/composefs/erofs/reader.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const ORACLE = join(ROOT, 'scripts', 'oracle.sh');
if (!existsSync(join(ROOT, '.cache', 'oracle-sid', '.ready'))) {
  throw new Error('oracle chroot missing: run `bash scripts/oracle.sh` first (needs root)');
}
const work = mkdtempSync('/tmp/erofs-reader-test-'); // under /tmp: visible inside the oracle chroot
t.teardown(() => rmSync(work, { recursive: true, force: true }));

let counter = 0;
/** mkcomposefs --from-file; returns the image path. */
function mkcomposefs(dump: string | Buffer, opts: string[] = []): string {
  const n = counter++;
  const dumpPath = join(work, `${n}.dump`);
  const img = join(work, `${n}.img`);
  writeFileSync(dumpPath, dump);
  const r = spawnSync(ORACLE, ['run', 'mkcomposefs', ...opts, '--from-file', dumpPath, img], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mkcomposefs failed (${r.status}): ${r.stderr}\n${String(dump).slice(0, 300)}`);
  return img;
}

function composefsInfoDump(img: string): Buffer {
  const r = spawnSync(ORACLE, ['run', 'composefs-info', 'dump', img], { maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`composefs-info dump failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------
// composefs-info's dump formatter (print_escaped + dump_node), written from the C source.

const STANDARD = 0;
const ESCAPE_EQUAL = 2;
const ESCAPE_LONE_DASH = 4;

function esc(b: Buffer, flags: number): string {
  if (flags & ESCAPE_LONE_DASH && b.length === 1 && b[0] === 0x2d) return '\\x2d';
  let s = '';
  for (const c of b) {
    if (c === 0x5c) s += '\\\\';
    else if (c === 0x0a) s += '\\n';
    else if (c === 0x0d) s += '\\r';
    else if (c === 0x09) s += '\\t';
    else if (c === 0x3d && flags & ESCAPE_EQUAL) s += '\\x3d';
    else if (c < 0x21 || c > 0x7e) s += `\\x${c.toString(16).padStart(2, '0')}`;
    else s += String.fromCharCode(c);
  }
  return s;
}

/** node_build_path: the root has no name, so the root's own path is "". */
const buildPath = (n: TreeNode): Buffer => (n.parent ? n.path() : Buffer.alloc(0));

function dumpTree(root: TreeNode): Buffer {
  const out: string[] = [];
  const rec = (node: TreeNode, path: Buffer): void => {
    const target = node.linkTo ?? node;
    const hl = node.linkTo ? buildPath(target) : undefined;
    let l = `${esc(path.length === 0 ? Buffer.from('/') : path, STANDARD)} ${target.size} ${hl ? '@' : ''}${target.mode.toString(8)} ${target.nlink} ${target.uid} ${target.gid} ${target.rdev} ${target.mtimeSec}.${target.mtimeNsec} `;
    const payload = hl ?? target.payload;
    l += payload ? esc(payload, ESCAPE_LONE_DASH) : '-';
    l += ' ';
    l += target.content ? esc(target.content.subarray(0, Number(target.size)), ESCAPE_LONE_DASH) : '-';
    l += target.digest ? ` ${target.digest.toString('hex')}` : ' -';
    for (const x of target.xattrs) l += ` ${esc(x.key, ESCAPE_EQUAL)}=${esc(x.value, ESCAPE_EQUAL)}`;
    out.push(l);
    for (const c of node.children()) rec(c, Buffer.concat([path, Buffer.from('/'), c.name]));
  };
  rec(root, Buffer.alloc(0));
  return Buffer.from(out.map((l) => `${l}\n`).join(''), 'latin1');
}

/** Read an image both ways (path with page cache, in-memory buffer) and compare with C. */
async function checkAgainstC(t: Test, img: string, what: string): Promise<TreeNode> {
  const expected = composefsInfoDump(img);
  const fromPath = await readErofsImage(img);
  const fromBuf = readErofsImageSync(readFileSync(img));
  const ours = dumpTree(fromPath);
  if (!ours.equals(expected)) {
    const a = ours.toString('latin1').split('\n');
    const b = expected.toString('latin1').split('\n');
    const i = a.findIndex((l, k) => l !== b[k]);
    t.fail(`${what}: differs from composefs-info dump at line ${i + 1}`, { found: a[i], wanted: b[i] });
  } else {
    t.pass(`${what}: identical to composefs-info dump (${expected.toString('latin1').split('\n').length - 1} lines)`);
  }
  t.ok(dumpTree(fromBuf).equals(ours), `${what}: buffer and path readers agree`);
  return fromPath;
}

// ---------------------------------------------------------------------------------------------
// Dumpfile writing helpers (input escaping: everything but [A-Za-z0-9._/] as \xHH is always valid).

function e(b: Buffer | string): string {
  const buf = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
  let s = '';
  for (const c of buf) {
    const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2e || c === 0x5f || c === 0x2f;
    s += ok ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return s;
}

const hex64 = (seed: number): string => {
  let s = '';
  for (let i = 0; i < 64; i++) s += ((seed * 7 + i * 13) % 16).toString(16);
  return s;
};

// ---------------------------------------------------------------------------------------------
// Fixed dumpfiles

const EX1 = `/ 4096 40755 3 0 0 0 1700000000.0 - - - security.selinux=system_u:object_r:root_t:s0\\x00 user.a=1
/dir 4096 40700 2 1000 1000 0 1700000000.5 - - - user.a=1
/dir/inline.txt 6 100644 1 1000 1000 0 1700000001.0 - hello\\n - user.a=1
/dir/external.bin 100000 100644 2 1000 1000 0 1700000002.123456789 ab/cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789 - abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789 trusted.overlay.opaque=y
/dir/hl 100000 @100644 2 1000 1000 0 1700000002.123456789 /dir/external.bin - -
/link 7 120777 1 0 0 0 1700000000.0 dir/hl - -
/fifo 0 10644 1 70000 0 0 1700000000.0 - - -
/null 0 20666 1 0 0 259 1700000000.0 - - -
`;

function specialLike(): string {
  const c4095 = 'a'.repeat(4095);
  const c4096 = 'b'.repeat(4096);
  const c4097 = 'c'.repeat(4097);
  const c5000 = e(Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 31 + 7) % 256)));
  return [
    `/ 4096 40555 2 0 0 0 1633950376.0 - - - trusted.foo1=bar-1 user.foo2=bar-2`,
    `/blockdev 0 60777 1 0 0 107690 1633950376.0 - - - trusted.bar=bar-2`,
    `/chardev 0 20777 1 0 0 10917 1633950376.0 - - - trusted.foo=bar-2`,
    `/escaped-xattr 0 100777 1 0 0 0 1633950376.0 - - - trusted.overlay.redirect=/foo\\n user.overlay.redirect=/foo\\n user.foo=bar\\x3dbaz trusted.overlay.whiteout=x trusted.overlay.opaque=z trusted.overlay.metacopy=m`,
    `/external 42 100755 1 0 0 0 1731497312.0 70/a9125438f7255245f596c54cebb6621cb9a64c062752cf26763c1b690e7340 - 70a9125438f7255245f596c54cebb6621cb9a64c062752cf26763c1b690e7340`,
    `/external-nodigest 42 100755 1 0 0 0 1633950376.0 70/a9 - -`,
    `/external-nopayload 42 100755 1 0 0 0 1633950376.0 - - ${hex64(3)}`,
    `/external-dashpayload 42 100755 1 0 0 0 1633950376.0 \\x2d - -`,
    `/fifo 0 10777 1 0 0 0 1633950376.0 - - -`,
    `/inline 14 100777 1 0 0 0 1633950376.0 - FOOBAR\\nBAZBAZ\\n -`,
    `/inline-dash 1 100644 1 0 0 0 1633950376.0 - \\x2d -`,
    `/inline4095 4095 100644 1 0 0 0 1633950376.0 - ${c4095} -`,
    `/inline4096 4096 100644 1 0 0 0 1633950376.0 - ${c4096} -`,
    `/inline4097 4097 100644 1 0 0 0 1633950376.0 - ${c4097} -`,
    `/inline5000 5000 100644 1 0 0 0 1633950376.0 - ${c5000} -`,
    `/socket 0 140777 1 0 0 0 1633950376.0 - - -`,
    `/empty 0 100644 1 0 0 0 1633950376.0 - - -`,
    `/huge 9000000000000000 100644 1 0 0 0 1633950376.0 hu/ge - ${hex64(9)}`,
    `/huge2 1099511627777 100644 1 0 0 0 1633950376.0 hu/ge2 - -`,
    `/whiteout 0 20000 1 0 0 0 1633950376.0 - - - user.keep=1`,
    `/sub 0 40755 2 0 0 0 1633950376.0 - - -`,
    `/sub/wh 0 20644 1 0 0 0 1633950376.0 - - -`,
    `/sub/hlwh 0 @20000 1 0 0 0 0.0 /sub/wh - -`,
    '',
  ].join('\n');
}

function bigDirs(): string {
  const lines = ['/ 4096 40755 2 0 0 0 0.0 - - -', '/big 4096 40755 2 0 0 0 0.0 - - -'];
  // 700 entries with names of 1..255 bytes: many blocks plus an inline tail
  for (let i = 0; i < 700; i++) {
    const len = 1 + ((i * 37) % 255);
    const name = (`n${i}_` + 'x'.repeat(255)).slice(0, Math.max(len, `n${i}_`.length));
    lines.push(`/big/${name} 0 100644 1 0 0 0 0.0 - - -`);
  }
  // a directory whose last chunk is just above 2048 bytes (no tail) and one just below (tail)
  lines.push('/above 4096 40755 2 0 0 0 0.0 - - -', '/below 4096 40755 2 0 0 0 0.0 - - -');
  // ".", ".." = 27 bytes; each entry 12 + 100 bytes
  for (let i = 0; i < 18; i++) lines.push(`/above/${String(i).padStart(3, '0')}${'a'.repeat(97)} 0 100644 1 0 0 0 0.0 - - -`);
  for (let i = 0; i < 18; i++) lines.push(`/below/${String(i).padStart(3, '0')}${'b'.repeat(96)} 0 100644 1 0 0 0 0.0 - - -`);
  // names that sort before "." (space, !, -, etc.) and bytes >= 0x80, =, backslash, newline
  lines.push('/odd 4096 40755 2 0 0 0 0.0 - - -');
  for (const n of ['\\x20sp', '!bang', '-dash', '+plus', '=eq', 'back\\\\slash', 'new\\nline', 'tab\\tx', 'high\\xff\\xfe', 'a\\x20b\\x20c', '\\x2d', 'é'])
    lines.push(`/odd/${n} 0 100644 1 0 0 0 0.0 - - -`);
  return `${lines.join('\n')}\n`;
}

function hardlinks(): string {
  return `/ 4096 40755 2 0 0 0 0.0 - - -
/a 4096 40755 2 0 0 0 0.0 - - -
/a/file 11 100644 3 0 0 0 0.0 - hello\\x20world -
/z 4096 40755 2 0 0 0 0.0 - - -
/z/orig 5000000 100600 2 5 6 0 12.5 00/12345 - ${hex64(1)} user.x=y
/b-link-to-later 0 @100644 0 0 0 0 0.0 /z/orig - -
/a/link2 0 @100644 0 0 0 0 0.0 /a/file - -
/c-chain 0 @100644 0 0 0 0 0.0 /a/link2 - -
/sym 5 120777 1 0 0 0 0.0 /a/file - -
/symhl 0 @120777 0 0 0 0 0.0 /sym - -
/dev 0 20644 3 0 0 1025 0.0 - - -
/devhl 0 @20644 0 0 0 0 0.0 /dev - -
/rootlink 0 @100644 0 0 0 0 0.0 / - -
`;
}

function longLinks(): string {
  const t = (n: number, c: string) => c.repeat(n);
  const lines = ['/ 4096 40755 2 0 0 0 0.0 - - -'];
  for (const [i, n] of [100, 2000, 3000, 4000, 4030, 4031, 4032, 4033, 4063, 4064, 4065, 4095].entries()) {
    lines.push(`/l${i} ${n} 120777 1 0 0 0 0.0 ${t(n, String.fromCharCode(97 + (i % 26)))} - -`);
    lines.push(`/x${i} ${n} 120777 1 0 0 0 0.0 ${t(n, 'q')} - - trusted.long${'n'.repeat(200)}=${'v'.repeat(i * 7)}`);
  }
  lines.push(`/dash 1 120777 1 0 0 0 0.0 \\x2d - -`);
  lines.push(`/binary 4 120777 1 0 0 0 0.0 \\x01\\x7f\\x80\\xff - -`);
  return `${lines.join('\n')}\n`;
}

function manyShared(): string {
  // 140 pairs carried by two inodes: more than 128 shared refs → the rest are stored inline
  const xs = Array.from({ length: 140 }, (_, i) => `user.k${String(i).padStart(3, '0')}=v${i}`).join(' ');
  return `/ 4096 40755 2 0 0 0 0.0 - - -
/f1 0 100644 1 0 0 0 0.0 - - - ${xs}
/f2 0 100644 1 0 0 0 0.0 - - - ${xs} user.only2=1
/f3 0 100644 1 0 0 0 0.0 - - - system.posix_acl_default=
/f4 0 100644 1 0 0 0 0.0 - - - system.posix_acl_access= security.a=b
/f5 0 100644 1 0 0 0 0.0 - - - system.posix_acl_default=\\x02\\x00 lustre.x=1 other.ns=2
/f6 0 100644 1 0 0 0 0.0 - - - user.a=1 user.a=2
`;
}

function extended(): string {
  return `/ 4096 40755 2 0 0 0 100.0 - - -
/bigid 0 100644 1 70000 80000 0 100.0 - - -
/bignlink 0 100644 70000 1 1 0 100.0 - - -
/nsec 0 100644 1 0 0 0 100.999999999 - - -
/neg 0 100644 1 0 0 0 -5.3 - - -
/later 3 100644 1 0 0 0 4000000000.1 - abc -
/d 4096 40755 2 65535 65536 0 100.0 - - -
`;
}

function deep(n: number): string {
  const lines = ['/ 4096 40755 2 0 0 0 0.0 - - -'];
  let p = '';
  for (let i = 0; i < n; i++) {
    p += `/d${i}`;
    lines.push(`${p} 4096 40755 2 0 0 0 0.0 - - -`);
  }
  lines.push(`${p}/leaf 1 100644 1 0 0 0 0.0 - x -`);
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Random dumpfiles (seeded)

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function randomDump(seed: number, nEntries: number): string {
  const r = mulberry32(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(a: readonly T[]): T => a[int(a.length)]!;
  const bytes = (n: number, alphabet?: number[]) =>
    Buffer.from(Array.from({ length: n }, () => (alphabet ? pick(alphabet) : 1 + int(255))));
  const nameAlphabet = [...Array(256).keys()].filter((c) => c !== 0 && c !== 0x2f);
  const simple = [...'abcdefghijklmnopqrstuvwxyz0123456789_.-'].map((c) => c.charCodeAt(0));
  const keyPool = [
    'user.a', 'user.b', 'user.with=eq', 'user.sp ace', 'security.selinux', 'security.capability', 'trusted.x',
    'trusted.overlay.opaque', 'trusted.overlay.redirect', 'trusted.overlay.whiteout', 'trusted.overlay.foo',
    'user.overlay.whiteout', 'user.overlay.opaque', 'system.posix_acl_access', 'system.posix_acl_default',
    'lustre.l', 'other.ns',
  ];
  const valuePool = ['1', 'y', 'x', '', 'system_u:object_r:root_t:s0\0', 'bar=baz'];
  const commonMtime = '1700000000.0';
  const mtime = () =>
    r() < 0.7 ? commonMtime : `${r() < 0.1 ? '-' : ''}${int(2 ** 31)}.${int(1_000_000_000)}`;
  const owner = () => (r() < 0.85 ? int(1001) : int(2 ** 32));
  const perm = () => (int(0o10000)).toString(8).padStart(4, '0');
  // mkcomposefs 1.0.8 can fail with ERANGE when it overwrites an overlay xattr the user already set
  // (whiteout markers on whiteouts and their parent directories: its budget accounting after
  // escaping), so whiteouts and directories get no overlay keys
  const whiteoutKeys = keyPool.filter((k) => !k.includes('overlay.'));
  const xattrs = (forWhiteout = false) => {
    const n = r() < 0.5 ? 0 : 1 + int(4);
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const key = pick(forWhiteout ? whiteoutKeys : keyPool);
      const value = r() < 0.7 ? Buffer.from(pick(valuePool), 'latin1') : bytes(int(r() < 0.9 ? 40 : 1500));
      out.push(`${e(key)}=${e(value)}`);
    }
    return out.length ? ` ${out.join(' ')}` : '';
  };

  interface Ent {
    path: string; // escaped
    isDir: boolean;
    kids: Set<string>;
  }
  const dirs: Ent[] = [{ path: '', isDir: true, kids: new Set() }];
  const nonDirs: string[] = [];
  const lines = [`/ 4096 4${perm()} 2 ${owner()} ${owner()} 0 ${mtime()} - - -${xattrs(true)}`];
  for (let i = 0; i < nEntries; i++) {
    const parent = pick(dirs);
    let name: Buffer;
    do {
      const len = r() < 0.8 ? 1 + int(12) : 1 + int(255);
      name = bytes(len, r() < 0.7 ? simple : nameAlphabet);
    } while (name.equals(Buffer.from('.')) || name.equals(Buffer.from('..')) || parent.kids.has(name.toString('latin1')));
    parent.kids.add(name.toString('latin1'));
    const path = `${parent.path}/${e(name)}`;
    const kind = pick(['dir', 'dir', 'inline', 'inline', 'external', 'external', 'empty', 'symlink', 'symlink', 'chr', 'blk', 'fifo', 'sock', 'whiteout', 'hardlink', 'hardlink'] as const);
    const common = () => `${r() < 0.9 ? 1 + int(3) : 70000 + int(10)} ${owner()} ${owner()}`;
    switch (kind) {
      case 'dir':
        lines.push(`${path} 4096 4${perm()} 2 ${owner()} ${owner()} 0 ${mtime()} - - -${xattrs(true)}`);
        dirs.push({ path, isDir: true, kids: new Set() });
        continue;
      case 'inline': {
        const n = r() < 0.7 ? 1 + int(64) : 1 + int(5000);
        lines.push(`${path} ${n} 10${perm()} ${common()} 0 ${mtime()} - ${e(bytes(n, nameAlphabet.concat([0])))} -${xattrs()}`);
        break;
      }
      case 'external': {
        const size = pick([1, 4096, 4097, 123456789, 2 ** 40 + 3, 9_000_000_000_000_000]);
        let payload = '-';
        if (r() < 0.8) {
          // "/" + payload with a length ≡ 0 mod 4 trips a C over-read (see the divergence test)
          let p = r() < 0.5 ? `${hex64(i).slice(0, 2)}/${hex64(i + 1).slice(0, 62)}` : bytes(1 + int(60), simple).toString('latin1');
          if (p.length % 4 === 3) p += 'z';
          payload = e(p);
        }
        const digest = r() < 0.7 ? hex64(i * 3 + 1) : '-';
        lines.push(`${path} ${size} 10${perm()} ${common()} 0 ${mtime()} ${payload} - ${digest}${xattrs()}`);
        break;
      }
      case 'empty':
        lines.push(`${path} 0 10${perm()} ${common()} 0 ${mtime()} - - -${xattrs()}`);
        break;
      case 'symlink': {
        const n = r() < 0.8 ? 1 + int(100) : 1 + int(4095);
        lines.push(`${path} ${n} 120777 ${common()} 0 ${mtime()} ${e(bytes(n))} - -${xattrs()}`);
        break;
      }
      case 'chr':
      case 'blk':
        lines.push(`${path} 0 ${kind === 'chr' ? '2' : '6'}${perm()} ${common()} ${1 + int(2 ** 32 - 1)} ${mtime()} - - -${xattrs()}`);
        break;
      case 'fifo':
        lines.push(`${path} 0 1${perm()} ${common()} 0 ${mtime()} - - -${xattrs()}`);
        break;
      case 'sock':
        lines.push(`${path} 0 14${perm()} ${common()} 0 ${mtime()} - - -${xattrs()}`);
        break;
      case 'whiteout':
        lines.push(`${path} 0 2${perm()} ${common()} 0 ${mtime()} - - -${xattrs(true)}`);
        break;
      case 'hardlink': {
        if (nonDirs.length === 0) {
          lines.push(`${path} 0 100644 1 0 0 0 ${mtime()} - - -`);
          break;
        }
        lines.push(`${path} 0 @100644 0 0 0 0 0.0 ${pick(nonDirs)} - -`);
        break;
      }
    }
    nonDirs.push(path);
  }
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------

t.test('fixed dumpfiles: reader output equals composefs-info dump', async (t) => {
  const cases: [string, string, string[]][] = [
    ['spec §7.3 ex1', EX1, []],
    ['special-like (default versions)', specialLike(), []],
    ['special-like (format 0)', specialLike(), ['--min-version=0', '--max-version=0']],
    ['special-like (format 1)', specialLike(), ['--min-version=1']],
    ['big directories, block boundaries, odd names', bigDirs(), []],
    ['hardlinks', hardlinks(), []],
    ['long symlinks', longLinks(), []],
    ['many shared xattrs, ACL and prefix edge cases', manyShared(), []],
    ['extended inodes', extended(), []],
    ['deep nesting (300)', deep(300), []],
  ];
  for (const [what, dump, opts] of cases) await checkAgainstC(t, mkcomposefs(dump, opts), what);
});

t.test('semantics spot checks', async (t) => {
  const { root, info } = await readErofsImageWithInfo(mkcomposefs(EX1));
  t.equal(info.composefsVersion, 0);
  t.equal(info.rootNid, 36);
  t.equal(info.buildTimeSec, 1700000000n);
  const ext = root.getChild('dir')!.getChild('external.bin')!;
  t.equal(ext.payload?.toString(), 'ab/cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789');
  t.equal(ext.digest?.toString('hex'), 'abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789');
  t.same(ext.xattrs.map((x) => x.key.toString()).sort(), ['trusted.overlay.opaque'], 'user trusted.overlay.* unescaped');
  t.equal(ext.mtimeNsec, 123456789);
  const hl = root.getChild('dir')!.getChild('hl')!;
  t.equal(hl.linkTo, ext, 'second dirent is a hardlink to the first');
  t.equal(root.getChild('dir')!.getChild('inline.txt')!.content?.toString(), 'hello\n');
  t.equal(root.getChild('link')!.payload?.toString(), 'dir/hl');
  t.equal(root.getChild('null')!.rdev, 259n);
  t.notOk(root.getChild('00'), 'whiteout stubs are skipped');
  t.notOk(root.getXattr('trusted.overlay.opaque'), "the writer's root opaque=y is dropped");

  const wh = await readErofsImage(mkcomposefs(specialLike(), ['--min-version=1']));
  const w = wh.getChild('whiteout')!;
  t.equal(w.mode, 0o20000, 'user whiteout is a char device 0/0 again');
  t.equal(w.rdev, 0n);
  t.same(w.xattrs.map((x) => x.key.toString()), ['user.keep']);
  t.equal(wh.getXattr('trusted.overlay.opaque')?.toString(), 'x', 'format-1 opaque marker reads back unescaped (like C)');
  // DFS order decides which dirent owns the inode: "hlwh" < "wh"
  t.equal(wh.getChild('sub')!.getChild('wh')!.linkTo, wh.getChild('sub')!.getChild('hlwh'));
  t.equal(wh.getChild('huge')!.size, 9000000000000000n);
});

t.test('random dumpfiles (seeded) equal composefs-info dump', async (t) => {
  const versions = [[], ['--min-version=0', '--max-version=0'], ['--min-version=1']];
  for (let seed = 1; seed <= 30; seed++) {
    const dump = randomDump(seed, seed % 10 === 0 ? 1500 : 20 + seed * 5);
    await checkAgainstC(t, mkcomposefs(dump, versions[seed % 3]), `seed ${seed}`);
  }
});

t.test('documented divergence: C over-reads redirect values whose length is a multiple of 4', async (t) => {
  const img = mkcomposefs(`/ 4096 40755 2 0 0 0 0.0 - - -
/a 100 100644 1 0 0 0 0.0 abc - - user.x=1
/b 100 100644 1 0 0 0 0.0 abcdefg - -
/c 100 100644 1 0 0 0 0.0 abcd - -
`);
  const c = composefsInfoDump(img).toString('latin1');
  const root = await readErofsImage(img);
  t.equal(root.getChild('a')!.payload?.toString(), 'abc');
  t.equal(root.getChild('b')!.payload?.toString(), 'abcdefg');
  t.equal(root.getChild('c')!.payload?.toString(), 'abcd');
  // composefs-info appends the 2 bytes following the value: the next entry's header, or the
  // chunk index 0xFFFFFFFF after the last xattr
  t.match(c, /^\/a 100 100644 1 0 0 0 0\.0 abc\\x01\\x01 - - user\.x=1$/m);
  t.match(c, /^\/b 100 100644 1 0 0 0 0\.0 abcdefg\\xff\\xff - -$/m);
  t.match(c, /^\/c 100 100644 1 0 0 0 0\.0 abcd - -$/m);
});

// ---------------------------------------------------------------------------------------------
// Hostile images

/** Read must either succeed or throw ErofsFormatError; never another error, never hang. */
function readCleanly(buf: Buffer): 'ok' | 'error' {
  try {
    const root = readErofsImageSync(buf);
    dumpTree(root); // the tree must be walkable
    return 'ok';
  } catch (err) {
    if (err instanceof ErofsFormatError) return 'error';
    throw err;
  }
}

t.test('hostile: bad magic, version, sizes', async (t) => {
  const good = readFileSync(mkcomposefs(EX1));
  const patched = (off: number, bytes: number[]) => {
    const b = Buffer.from(good);
    bytes.forEach((v, i) => (b[off + i] = v));
    return b;
  };
  t.throws(() => readErofsImageSync(Buffer.alloc(0)), ErofsFormatError);
  t.throws(() => readErofsImageSync(good.subarray(0, 4095)), /too small/);
  t.throws(() => readErofsImageSync(patched(0, [0, 0, 0, 0])), /not a composefs image: header magic at offset 0/);
  t.throws(() => readErofsImageSync(patched(4, [2])), /composefs header version 2/);
  t.throws(() => readErofsImageSync(patched(1024, [0])), /superblock magic .* at offset 1024/);
  t.throws(() => readErofsImageSync(patched(1024 + 12, [13])), /block size/);
  t.throws(() => readErofsImageSync(patched(1024 + 44, [0xff, 0xff, 0, 0])), /xattr_blkaddr/);
  t.throws(() => readErofsImageSync(patched(1024 + 14, [0xff, 0xff])), /nid 65535/);
  const notExisting = join(work, 'does-not-exist.img');
  await t.rejects(readErofsImage(notExisting), { code: 'ENOENT' });
});

t.test('hostile: truncated images', async (t) => {
  const good = readFileSync(mkcomposefs(randomDump(4242, 200)));
  let errors = 0;
  for (let len = 0; len < good.length; len += len < 8192 ? 509 : 4093) {
    if (readCleanly(good.subarray(0, len)) === 'error') errors++;
  }
  t.ok(errors > 0, `${errors} truncations rejected cleanly, none crashed`);
  t.equal(readCleanly(good), 'ok');
});

t.test('hostile: seeded random byte flips never crash or hang', async (t) => {
  const good = readFileSync(mkcomposefs(randomDump(777, 150)));
  const info = readErofsImageWithInfo(good);
  const { info: inf } = await info;
  const metaEnd = inf.xattrBlkaddr * 4096 + 4096; // inodes + shared xattrs: the interesting part
  const r = mulberry32(99);
  const counts = { ok: 0, error: 0 };
  const start = Date.now();
  for (let i = 0; i < 400; i++) {
    const b = Buffer.from(good);
    const flips = 1 + Math.floor(r() * 8);
    for (let k = 0; k < flips; k++) {
      const off = r() < 0.85 ? 1024 + Math.floor(r() * (metaEnd - 1024)) : Math.floor(r() * b.length);
      b[off] = r() < 0.5 ? b[off]! ^ (1 << Math.floor(r() * 8)) : Math.floor(r() * 256);
    }
    const t0 = Date.now();
    counts[readCleanly(b)]++;
    if (Date.now() - t0 > 5000) t.fail(`flip round ${i} took ${Date.now() - t0} ms`);
  }
  t.ok(counts.error > 0 && counts.ok > 0, `400 mutated images: ${counts.ok} read, ${counts.error} rejected cleanly in ${Date.now() - start} ms`);
});

/** Offset of the extended inode whose uid is `uid` (scan of 32-byte slots). */
function findInodeByUid(img: Buffer, uid: number): number {
  for (let off = 1152; off + 64 <= img.length; off += 32) {
    if ((img.readUInt16LE(off) & 1) === 1 && img.readUInt32LE(off + 24) === uid && (img.readUInt16LE(off + 4) & 0o170000) === 0o040000) return off;
  }
  throw new Error(`no inode with uid ${uid}`);
}

t.test('hostile: directory cycles become hardlinks, no loop', async (t) => {
  const img = readFileSync(mkcomposefs(`/ 4096 40755 2 0 0 0 0.0 - - -
/a 4096 40755 2 900001 0 0 0.0 - - -
/a/b 4096 40755 2 900002 0 0 0.0 - - -
/a/b/c 1 100644 1 0 0 0 0.0 - x -
`));
  const aOff = findInodeByUid(img, 900001);
  const aNid = aOff / 32;
  // /a is FLAT_INLINE: its dirents (".", "..", "b") follow the 64-byte inode (no xattrs)
  const dirents = aOff + 64;
  t.equal(img.toString('latin1', dirents + 36, dirents + 36 + 4), '...b', 'found /a dirents');
  const toRoot = Buffer.from(img);
  toRoot.writeBigUInt64LE(36n, dirents + 24); // "b" → root
  const r1 = readErofsImageSync(toRoot);
  t.equal(r1.getChild('a')!.getChild('b')!.linkTo, r1, '/a/b is a hardlink to /');
  const toSelf = Buffer.from(img);
  toSelf.writeBigUInt64LE(BigInt(aNid), dirents + 24); // "b" → /a itself
  const r2 = readErofsImageSync(toSelf);
  t.equal(r2.getChild('a')!.getChild('b')!.linkTo, r2.getChild('a'), '/a/b is a hardlink to /a');
  t.equal(dumpTree(r2).toString().split('\n').length - 1, 3);
});

t.test('hostile: directories sharing data blocks are rejected before the work explodes', async (t) => {
  const lines = ['/ 4096 40755 2 0 0 0 0.0 - - -', '/big 4096 40755 2 800000 0 0 0.0 - - -'];
  for (let i = 0; i < 70; i++) lines.push(`/big/${String(i).padStart(3, '0')}${'n'.repeat(200)} 0 100644 1 0 0 0 0.0 - - -`);
  for (let i = 0; i < 40; i++) lines.push(`/e${i} 4096 40755 2 ${810000 + i} 0 0 0.0 - - -`);
  const img = readFileSync(mkcomposefs(`${lines.join('\n')}\n`));
  const bigOff = findInodeByUid(img, 800000);
  const bigSize = img.readBigUInt64LE(bigOff + 8);
  const bigBlk = img.readUInt32LE(bigOff + 16);
  t.ok(bigSize > 8192n, `/big spans ${bigSize} bytes`);
  const b = Buffer.from(img);
  for (let i = 0; i < 40; i++) {
    const off = findInodeByUid(b, 810000 + i);
    b.writeUInt16LE((b.readUInt16LE(off) & ~0b1110) | (0 << 1), off); // FLAT_PLAIN
    b.writeBigUInt64LE(bigSize, off + 8);
    b.writeUInt32LE(bigBlk, off + 16);
  }
  t.throws(() => readErofsImageSync(b), /exceeds the data left in the image/);
});

t.test('hostile: overlapping inodes with huge xattr areas cannot multiply the work', async (t) => {
  // Synthetic image: the root directory lists 10000 consecutive nids; every 32-byte slot of the
  // region is a compact regular inode whose 261 KB xattr area overlaps the next 8000 inodes and
  // parses as valid xattr entries. Reading each inode's area in full would be ~160M entries.
  const N = 10000;
  const perBlock = 256; // 12-byte dirent + 4-byte name = 16 bytes
  const dirBlocks = Math.ceil(N / perBlock);
  const regionBlock = 1 + dirBlocks;
  const regionNid = (regionBlock * 4096) / 32;
  const size = Math.ceil((regionBlock * 4096 + N * 32 + 0xff00 * 4 + 8192) / 4096) * 4096;
  const img = Buffer.alloc(size);
  img.writeUInt32LE(0xd078629a, 0);
  img.writeUInt32LE(1, 4);
  img.writeUInt32LE(0xe0f5e1e2, 1024);
  img[1024 + 12] = 12;
  img.writeUInt16LE(36, 1024 + 14);
  // root: compact FLAT_PLAIN directory at nid 36
  img.writeUInt16LE(0, 1152);
  img.writeUInt16LE(0o40755, 1152 + 4);
  img.writeUInt32LE(Math.ceil(N / perBlock) * 4096, 1152 + 8);
  img.writeUInt32LE(1, 1152 + 16);
  for (let i = 0; i < N; i++) {
    const blk = 4096 * (1 + Math.floor(i / perBlock));
    const k = i % perBlock;
    const count = Math.min(perBlock, N - Math.floor(i / perBlock) * perBlock);
    img.writeBigUInt64LE(BigInt(regionNid + i), blk + k * 12);
    img.writeUInt16LE(count * 12 + k * 4, blk + k * 12 + 8);
    img.write(i.toString(16).padStart(4, '0'), blk + count * 12 + k * 4, 'latin1');
  }
  for (let off = regionBlock * 4096; off + 32 <= size; off += 32) {
    // i_format 0x0100, icount 0xfd01 (area = 12 + 16·k bytes), mode 0100400 (low byte 0 = no shared ids), nlink 1
    Buffer.from([0x00, 0x01, 0x01, 0xfd, 0x00, 0x81, 1, 0]).copy(img, off);
    Buffer.from([0x00, 0x01, 0x0c, 0x00]).copy(img, off + 12); // xattr entry "user." + 12-byte value
    Buffer.from([0x00, 0x01, 0x0c, 0x00]).copy(img, off + 28);
  }
  const t0 = Date.now();
  t.throws(() => readErofsImageSync(img), /exceeds the data left in the image/);
  t.ok(Date.now() - t0 < 5000, `rejected in ${Date.now() - t0} ms`);
});

t.test('hostile: nesting deeper than maxDepth is an error', async (t) => {
  const img = mkcomposefs(deep(60));
  await t.rejects(readErofsImage(img, { maxDepth: 50 }), /deeper than 50/);
  // 60 directories below the root: maxDepth 60 reads them, 59 does not.
  await t.rejects(readErofsImage(img, { maxDepth: 59 }), /deeper than 59/);
  const root = await readErofsImage(img, { maxDepth: 60 });
  t.ok(root.getChild('d0'));
});

t.test('a path that is not a regular file is refused before it is opened (a FIFO would block)', async (t) => {
  const d = mkdtempSync(join(tmpdir(), 'erofs-fifo-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  const fifo = join(d, 'fifo');
  spawnSync('mkfifo', [fifo]);
  await t.rejects(readErofsImage(fifo), /fifo: not a regular file/);
});
