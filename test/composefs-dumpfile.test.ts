/**
 * composefs dumpfile reader/writer: table-driven edge cases for every rule of
 * composefs-format.md §2 (each expectation is also checked against mkcomposefs 1.0.8 in the
 * oracle chroot, in one batch), streaming, the writer's escaping, and round trips.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { DumpfileParser, parseDumpfile, parseDumpfileSync } from '../src/composefs/dumpfile/reader.js';
import { dumpfileChunks, writeDumpfile } from '../src/composefs/dumpfile/writer.js';
import { buildErofs } from '../src/composefs/erofs/writer.js';
import { DumpfileSyntaxError } from '../src/composefs/errors.js';
import { TreeNode, lookupPath, walk } from '../src/tree/model.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ORACLE = join(ROOT, 'scripts', 'oracle.sh');
const R = '/ 4096 40755 2 0 0 0 0.0 - - -\n';

interface Case {
  name: string;
  dump: string | Buffer;
  strict?: boolean;
  /** Expected rejection: [reason, line, field]; omitted = accepted. */
  fail?: [string, number, string];
  /** Extra checks on the parsed tree. */
  check?: (root: TreeNode, t: Tap) => void;
}
type Tap = typeof t;

const long = (n: number, c = 'a'): string => c.repeat(n);

const lineCount = (s: string): number => s.split('\n').length;

/** A dump of ~1000-byte lines whose last line has no newline and ends at byte `total`. */
function endingAt(total: number): string {
  const line = (i: number, n: number): string => `/f${i} 0 100644 1 0 0 0 0.0 - - - user.a=${long(n)}`;
  let s = R;
  let i = 0;
  while (total - s.length > 2000) {
    const l = line(i++, 1000) + '\n';
    s += l;
  }
  return s + line(i, total - s.length - line(i, 0).length);
}
const D64 = 'ab'.repeat(32);

// -------------------------------------------------------------------------------------------------
// §2.9 should-fail catalogue, one case per asset (same rule), plus the other errors of §2.

const CASES: Case[] = [
  // should-fail-big-inline
  { name: 'big-inline', dump: `${R}/f 5004 100644 1 0 0 0 0.0 - ${long(5004)} -\n`, fail: ['Inline content size 5004 exceeds maximum 5000', 2, 'CONTENT'] },
  // should-fail-dir-hardlink
  { name: 'dir-hardlink', dump: `${R}/d 4096 40755 2 0 0 0 0.0 - - -\n/h 0 @40555 1 0 0 0 0.0 /d - -\n`, fail: ["Directories can't be hardlinked", 3, 'MODE'] },
  // should-fail-dot-name / dotdot-name
  { name: 'dot-name', dump: `${R}/. 0 100644 1 0 0 0 0.0 - - -\n`, fail: ['Invalid . or .. in path: /.', 2, 'PATH'] },
  { name: 'dotdot-name', dump: `${R}/.. 0 100644 1 0 0 0 0.0 - - -\n`, fail: ['Invalid . or .. in path: /..', 2, 'PATH'] },
  // should-fail-empty-link-name
  { name: 'empty-link-name', dump: `${R}/l 0 120777 1 0 0 0 0.0 - - -\n`, fail: ['Invalid symlink', 2, 'PAYLOAD'] },
  // should-fail-empty-name
  { name: 'empty-name', dump: `${R}// 0 100644 1 0 0 0 0.0 - - -\n`, fail: ["Can't add child", 2, 'PATH'] },
  // should-fail-empty-xattr-key
  { name: 'empty-xattr-key', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - =somevalue\n`, fail: ["Can't set xattr", 2, 'XATTRS'] },
  // should-fail-honggfuzz-long-xattr: over the 32767-byte budget
  {
    name: 'xattr budget',
    dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - user.a=${long(16000)} user.b=${long(16000)} user.c=${long(800)}\n`,
    fail: ["Can't set xattr", 2, 'XATTRS'],
  },
  {
    name: 'xattr budget exactly full',
    // 12 + (7+6+32742) = 32767
    dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - user.a=${long(32742)}\n`,
  },
  { name: 'xattr budget one over', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - user.a=${long(32743)}\n`, fail: ["Can't set xattr", 2, 'XATTRS'] },
  // should-fail-long-link
  { name: 'long-link', dump: `${R}/l 4096 120777 1 0 0 0 0.0 ${long(4096, 't')} - -\n`, fail: ['Invalid symlink', 2, 'PAYLOAD'] },
  { name: 'link 4095', dump: `${R}/l 4095 120777 1 0 0 0 0.0 ${long(4095, 't')} - -\n` },
  // should-fail-long-xattr-key: the xattr text alone is > 65535 bytes
  { name: 'long-xattr-key', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - ${long(65536, 'k')}=v\n`, fail: ['Too many xattrs', 2, 'XATTRS'] },
  { name: 'xattr text exactly 65535', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - ${long(65533, 'k')}=v\n`, fail: ["Can't set xattr", 2, 'XATTRS'] },
  // should-fail-long-xattr-value: fails earlier, MODE 644 has no type
  { name: 'long-xattr-value (mode 644)', dump: `${R}/f 0 644 1 0 0 0 0.0 - - - user.a=${long(70000)}\n`, fail: ['Invalid mode 644', 2, 'MODE'] },
  // should-fail-no-ftype
  { name: 'no-ftype', dump: `${R}/f 0 0 1 0 0 0 0.0 - - -\n`, fail: ['Invalid mode 0', 2, 'MODE'] },
  // should-fail-self-hardlink
  { name: 'self-hardlink', dump: `${R}/037blockdev 0 @60644 1 0 0 0 0.0 /037blockdev - -\n`, fail: ['Self-referential hardlink /037blockdev', 2, 'PAYLOAD'] },
  // (should-fail-too-big is a writer error: see composefs-erofs.test.ts)

  // Lines and fields (§2.1, §2.2)
  { name: 'empty input', dump: '', fail: ['No files in dump file', 0, 'FILE'] },
  { name: 'empty line', dump: `${R}\n/f 0 100644 1 0 0 0 0.0 - - -\n`, fail: ['Invalid empty path', 2, 'PATH'] },
  { name: 'embedded NUL', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - user.a=\0\n`, fail: ['Invalid embedded NUL character at position 37', 2, 'LINE'] },
  { name: 'root not first', dump: `/f 0 100644 1 0 0 0 0.0 - - -\n${R}`, fail: ['Root node not present', 1, 'PATH'] },
  { name: 'root not a dir', dump: '/ 0 100644 1 0 0 0 0.0 - - -\n', fail: ['Root must be a directory', 1, 'MODE'] },
  { name: 'two roots', dump: `${R}${R}`, fail: ["Can't have multiple roots", 2, 'PATH'] },
  { name: 'parent missing', dump: `${R}/x/a 0 100644 1 0 0 0 0.0 - - -\n`, fail: ['Parent directory missing for /x/a', 2, 'PATH'] },
  { name: 'parent not a dir', dump: `${R}/a 0 100644 1 0 0 0 0.0 - - -\n/a/b 0 100644 1 0 0 0 0.0 - - -\n`, fail: ['Parent must be a directory for /a/b', 3, 'PATH'] },
  { name: 'trailing slash = empty name', dump: `${R}/d 0 40755 2 0 0 0 0.0 - - -\n/d/ 0 100644 1 0 0 0 0.0 - - -\n`, fail: ["Can't add child", 3, 'PATH'] },
  { name: 'duplicate', dump: `${R}/a 0 100644 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n`, fail: ["Can't add child", 3, 'PATH'] },
  { name: 'name 256 bytes', dump: `${R}/${long(256)} 0 100644 1 0 0 0 0.0 - - -\n`, fail: ["Can't add child", 2, 'PATH'] },
  { name: 'name 255 bytes', dump: `${R}/${long(255)} 0 100644 1 0 0 0 0.0 - - -\n` },
  { name: '. in the middle is not normalized', dump: `${R}/d 0 40755 2 0 0 0 0.0 - - -\n/d/./x 0 100644 1 0 0 0 0.0 - - -\n`, fail: ['Parent directory missing for /d/./x', 3, 'PATH'] },
  {
    name: 'relative paths and repeated slashes',
    dump: `${R}d 0 40755 2 0 0 0 0.0 - - -\n//d///x 0 100644 1 0 0 0 0.0 - - -\n`,
    check: (root, t) => t.ok(lookupPath(root, '/d/x'), '/d/x exists'),
  },
  {
    name: 'fewer fields: the rest are empty',
    dump: `${R}/f 0 100644 1 0 0 0\n`,
    fail: ['Invalid integer ', 2, 'MTIME'],
  },
  {
    name: 'one trailing space after DIGEST is harmless',
    dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - \n`,
  },
  { name: 'two trailing spaces', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - -  \n`, fail: ['Missing = in xattr', 2, 'XATTRS'] },
  {
    name: 'CR is part of the last field',
    dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - user.a=b\r\n`,
    check: (root, t) => t.same(lookupPath(root, '/f')!.getXattr('user.a'), Buffer.from('b\r')),
  },

  // Escapes (§2.3)
  {
    name: 'escapes in every field',
    dump: `${R}/\\x41\\x62\\\\\\n\\t\\r 3 100644 1 0 0 0 0.0 \\x2d \\x00\\xff\\x3d - user.k\\x3dx=v=\\x20w\n`,
    check: (root, t) => {
      const f = lookupPath(root, Buffer.from('/Ab\\\n\t\r', 'latin1'))!;
      t.ok(f, 'path unescaped');
      t.same(f.payload, Buffer.from('-'), 'escaped lone dash payload');
      t.same(f.content, Buffer.from([0, 0xff, 0x3d]), 'content keeps NUL');
      t.same(f.getXattr('user.k=x'), Buffer.from('v= w'), 'key with =, value with raw =');
    },
  },
  { name: 'unsupported escape', dump: `${R}/a\\q 0 100644 1 0 0 0 0.0 - - -\n`, fail: ['Unsupported escape type q', 2, 'PATH'] },
  { name: 'backslash at end', dump: `${R}/f 0 100644 1 0 0 0 0.0 a\\ - -\n`, fail: ['No character after escape', 2, 'PAYLOAD'] },
  { name: 'short hex escape', dump: `${R}/f 1 100644 1 0 0 0 0.0 - \\x4 -\n`, fail: ['No hex characters after hex escape', 2, 'CONTENT'] },
  { name: 'hex escape at end', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - user.a=\\x\n`, fail: ['No hex characters after hex escape', 2, 'XATTRS'] },
  { name: 'bad hex escape', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - \\xzz\n`, fail: ['Invalid hex characters after hex escape', 2, 'DIGEST'] },
  { name: 'escaped NUL truncates the path', dump: `${R}/ab\\x00cd 0 100644 1 0 0 0 0.0 - - -\n`, check: (root, t) => t.ok(root.getChild('ab')) },
  { name: 'escaped NUL: empty path', dump: `${R}\\x00/x 0 100644 1 0 0 0 0.0 - - -\n`, fail: ['Invalid empty path', 2, 'PATH'] },
  {
    name: 'escaped NUL truncates key and payload, not value',
    dump: `${R}/f 5 100644 1 0 0 0 0.0 ab\\x00cd - - user.k\\x00zz=a\\x00b\n`,
    check: (root, t) => {
      const f = lookupPath(root, '/f')!;
      t.same(f.payload, Buffer.from('ab'));
      t.same(f.getXattr('user.k'), Buffer.from('a\0b'));
    },
  },
  { name: 'escaped NUL truncates the symlink target to empty', dump: `${R}/l 1 120777 1 0 0 0 0.0 \\x00x - -\n`, fail: ['Invalid symlink', 2, 'PAYLOAD'] },

  // Numbers (§2.4)
  { name: 'bad SIZE', dump: `${R}/f 12a 100644 1 0 0 0 0.0 - - -\n`, fail: ['Invalid integer 12a', 2, 'SIZE'] },
  { name: 'empty NLINK', dump: `${R}/f 0 100644  0 0 0 0.0 - - -\n`, fail: ['Invalid integer ', 2, 'NLINK'] },
  { name: 'octal MODE with 8', dump: `${R}/f 0 100648 1 0 0 0 0.0 - - -\n`, fail: ['Invalid integer 100648', 2, 'MODE'] },
  {
    name: 'strtoull: tab, +, -, overflow saturates',
    dump: `${R}/f 99999999999999999999999 100644 \t7 +8 -1 0 -5.4294967297 - - -\n`,
    check: (root, t) => {
      const f = lookupPath(root, '/f')!;
      t.equal(f.size, (1n << 64n) - 1n, 'overflow saturates');
      t.equal(f.nlink, 7, 'leading tab');
      t.equal(f.uid, 8, 'plus sign');
      t.equal(f.gid, 0xffffffff, '-1 wraps, truncated to u32');
      t.equal(f.mtimeSec, -5n, 'seconds are signed');
      t.equal(f.mtimeNsec, 1, 'nsec truncated to u32');
    },
  },
  { name: 'just a sign', dump: `${R}/f + 100644 1 0 0 0 0.0 - - -\n`, fail: ['Invalid integer +', 2, 'SIZE'] },
  { name: 'GID error reported when UID is 0', dump: `${R}/f 0 100644 1 0 x 0 0.0 - - -\n`, fail: ['Invalid integer x', 2, 'GID'] },
  { name: 'RDEV error reported when UID is 0', dump: `${R}/f 0 100644 1 0 0 x 0.0 - - -\n`, fail: ['Invalid integer x', 2, 'RDEV'] },
  {
    name: 'GID/RDEV errors ignored when UID is not 0 (mkcomposefs bug)',
    dump: `${R}/c 0 20644 1 5 x y 0.0 - - -\n`,
    check: (root, t) => {
      const c = lookupPath(root, '/c')!;
      t.equal(c.gid, 0);
      t.equal(c.rdev, 0n);
    },
  },
  { name: 'MTIME without dot', dump: `${R}/f 0 100644 1 0 0 0 17 - - -\n`, fail: ['Invalid integer ', 2, 'MTIME'] },
  { name: 'MTIME bad nsec', dump: `${R}/f 0 100644 1 0 0 0 1.x - - -\n`, fail: ['Invalid integer x', 2, 'MTIME'] },
  {
    name: 'MTIME 1.1 is 1 s + 1 ns, huge seconds are negative',
    dump: `${R}/a 0 100644 1 0 0 0 1.1 - - -\n/b 0 100644 1 0 0 0 9223372036854775808.0 - - -\n`,
    check: (root, t) => {
      t.equal(lookupPath(root, '/a')!.mtimeNsec, 1);
      t.equal(lookupPath(root, '/b')!.mtimeSec, -(1n << 63n));
    },
  },
  {
    name: 'MODE keeps high bits, type from the low bits',
    dump: `${R}/l 3 20720777 1 0 0 0 0.0 abc - -\n`,
    check: (root, t) => t.equal(lookupPath(root, '/l')!.mode, 0o20720777),
  },

  // Per-line processing (§2.5)
  { name: 'content size mismatch', dump: `${R}/f 3 100644 1 0 0 0 0.0 - ab -\n`, fail: ['Invalid content size 2, must match size 3', 2, 'CONTENT'] },
  { name: 'content size mismatch on a symlink too', dump: `${R}/l 3 120777 1 0 0 0 0.0 abc ab -\n`, fail: ['Invalid content size 2, must match size 3', 2, 'CONTENT'] },
  { name: 'payload 4096 on a regular file', dump: `${R}/f 1 100644 1 0 0 0 0.0 ${long(4096, 'p')} - -\n`, fail: ['Invalid payload', 2, 'PAYLOAD'] },
  {
    name: 'empty content field = zero-length content',
    dump: `${R}/f 0 100644 1 0 0 0 0.0 -  -\n`,
    check: (root, t) => t.equal(lookupPath(root, '/f')!.content, undefined),
  },
  {
    name: 'symlink size is the target length (lax)',
    dump: `${R}/l 99 120777 1 0 0 0 0.0 target - -\n`,
    check: (root, t) => t.equal(lookupPath(root, '/l')!.size, 6n),
  },
  {
    name: 'RDEV ignored on non-devices (lax), 64-bit on devices',
    dump: `${R}/f 0 100644 1 0 0 7 0.0 - - -\n/c 0 20644 1 0 0 4294967296 0.0 - - -\n`,
    check: (root, t) => {
      t.equal(lookupPath(root, '/f')!.rdev, 0n);
      t.equal(lookupPath(root, '/c')!.rdev, 4294967296n);
    },
  },
  {
    name: 'digest decoding like digest_to_raw',
    dump: `${R}/a 1 100644 1 0 0 0 0.0 x - ${D64}ffff\n/b 1 100644 1 0 0 0 0.0 x - ${D64.toUpperCase()}\n`,
    check: (root, t) => {
      t.same(lookupPath(root, '/a')!.digest, Buffer.from(D64, 'hex'), 'extra characters ignored');
      t.same(lookupPath(root, '/b')!.digest, Buffer.from(D64, 'hex'), 'upper case');
    },
  },
  {
    name: 'repeated xattr key: later value wins',
    dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - user.a=1 user.b=2 user.a=3\n`,
    check: (root, t) => {
      const f = lookupPath(root, '/f')!;
      t.equal(f.xattrs.length, 2);
      t.same(f.getXattr('user.a'), Buffer.from('3'));
    },
  },
  { name: 'xattr without =', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - user.a\n`, fail: ['Missing = in xattr', 2, 'XATTRS'] },
  { name: 'xattr key 256 bytes', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - ${long(256, 'k')}=v\n`, fail: ["Can't set xattr", 2, 'XATTRS'] },
  { name: 'xattr key 255 bytes', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - - ${long(255, 'k')}=v\n` },

  // Hardlinks (§2.5)
  {
    name: 'hardlink: other fields and xattrs ignored, target resolved later',
    dump: `${R}/h junk @100644 junk junk junk junk junk /f \\q - zz=1 broken\n/f 0 100644 7 0 0 0 0.0 - - -\n`,
    check: (root, t) => {
      const h = lookupPath(root, '/h')!;
      t.equal(h.linkTo, lookupPath(root, '/f'));
      t.equal(lookupPath(root, '/f')!.nlink, 7, 'target NLINK not modified');
      t.equal(h.xattrs.length, 0);
    },
  },
  { name: 'hardlink with bad escape in target', dump: `${R}/h 0 @100644 1 0 0 0 0.0 /f\\q - -\n`, fail: ['Unsupported escape type q', 2, 'PAYLOAD'] },
  { name: 'hardlink without target', dump: `${R}/h 0 @100644 1 0 0 0 0.0 - - -\n`, fail: ['No target path for the hardlink', 2, 'PAYLOAD'] },
  { name: 'hardlink to missing target', dump: `${R}/h 0 @100644 1 0 0 0 0.0 /nope - -\n`, fail: ['No target at /nope for hardlink', 2, 'PAYLOAD'] },
  {
    name: 'hardlink fixups are resolved last line first (LIFO)',
    dump: `${R}/h1 0 @100644 1 0 0 0 0.0 /nope1 - -\n/h2 0 @100644 1 0 0 0 0.0 /nope2 - -\n`,
    fail: ['No target at /nope2 for hardlink', 3, 'PAYLOAD'],
  },
  {
    name: 'hardlink chain and hardlink to the root (quirk: accepted)',
    dump: `${R}/f 0 100644 1 0 0 0 0.0 - - -\n/h1 0 @100644 1 0 0 0 0.0 /f - -\n/h2 0 @100644 1 0 0 0 0.0 h1 - -\n/r 0 @100644 1 0 0 0 0.0 // - -\n`,
    check: (root, t) => {
      t.equal(lookupPath(root, '/h2')!.resolve(), lookupPath(root, '/f'));
      t.equal(lookupPath(root, '/r')!.linkTo, root);
    },
  },

  // Strict mode (§2.7)
  { name: 'no trailing newline (lax)', dump: `${R}/f 0 100644 1 0 0 0 0.0 - - -` },
  { name: 'no trailing newline (strict)', strict: true, dump: `${R}/f 0 100644 1 0 0 0 0.0 - - -`, fail: ['Missing trailing newline', 2, 'LINE'] },
  {
    name: 'no trailing newline at the 64 KiB read boundary is accepted (strict)',
    strict: true,
    dump: endingAt(65536),
  },
  {
    name: 'no trailing newline one byte past the boundary (strict)',
    strict: true,
    dump: endingAt(65537),
    fail: ['Missing trailing newline', lineCount(endingAt(65537)), 'LINE'],
  },
  {
    name: 'no trailing newline at the second read boundary (buffer kept, strict)',
    strict: true,
    // mkcomposefs reads 64 KiB, keeps the partial last line, then reads 64 KiB minus that
    dump: endingAt(65536 + 65536 - 900),
    fail: ['Missing trailing newline', lineCount(endingAt(65536 + 65536 - 900)), 'LINE'],
  },
  { name: 'non-zero rdev on a file (strict)', strict: true, dump: `${R}/f 0 100644 1 0 0 1 0.0 - - -\n`, fail: ['Non-zero devnum on non-device', 2, 'RDEV'] },
  { name: 'symlink size mismatch (strict)', strict: true, dump: `${R}/l 5 120777 1 0 0 0 0.0 abc - -\n`, fail: ['Invalid symlink size 3, must match size 5', 2, 'SIZE'] },
  { name: 'symlink with content (strict)', strict: true, dump: `${R}/l 3 120777 1 0 0 0 0.0 abc abc -\n`, fail: ['Symlink cannot have content', 2, 'CONTENT'] },
  { name: 'symlink with empty content still needs SIZE = target length (strict)', strict: true, dump: `${R}/l 0 120777 1 0 0 0 0.0 abc  -\n`, fail: ['Invalid symlink size 3, must match size 0', 2, 'SIZE'] },
];

function runOurs(c: Case): { root?: TreeNode; err?: DumpfileSyntaxError } {
  try {
    return { root: parseDumpfileSync(typeof c.dump === 'string' ? Buffer.from(c.dump, 'latin1') : c.dump, { strict: !!c.strict }) };
  } catch (e) {
    if (e instanceof DumpfileSyntaxError) return { err: e };
    throw e;
  }
}

t.test('edge cases: verdict, message, line and field (and mkcomposefs agrees)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cfs-dump-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script: string[] = [`cd ${dir}`];
  CASES.forEach((c, i) => {
    writeFileSync(join(dir, `${i}.dump`), typeof c.dump === 'string' ? Buffer.from(c.dump, 'latin1') : c.dump);
    script.push(`${c.strict ? 'CFS_PARSE_STRICT=1 ' : ''}mkcomposefs --from-file ${i}.dump ${i}.img 2>${i}.err; echo $? >${i}.rc`);
  });
  writeFileSync(join(dir, 'run.sh'), script.join('\n') + '\n');
  execFileSync(ORACLE, ['run', 'sh', join(dir, 'run.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });

  CASES.forEach((c, i) => {
    const r = runOurs(c);
    const rc = readFileSync(join(dir, `${i}.rc`), 'utf8').trim();
    const cerr = readFileSync(join(dir, `${i}.err`), 'utf8').replace(/\n$/, '').replace(/^mkcomposefs: /, '');
    if (c.fail) {
      const [reason, line, field] = c.fail;
      t.ok(r.err, `${c.name}: rejected`);
      if (r.err) {
        t.equal(r.err.reason, reason, `${c.name}: reason`);
        t.equal(r.err.line, line, `${c.name}: line`);
        t.equal(r.err.field, field, `${c.name}: field`);
        t.match(r.err.message, line > 0 ? `line ${line}` : 'input', `${c.name}: message names the line`);
      }
      t.not(rc, '0', `${c.name}: mkcomposefs rejects too`);
      t.equal(cerr, reason, `${c.name}: mkcomposefs says the same`);
    } else {
      t.notOk(r.err, `${c.name}: accepted${r.err ? ` (${r.err.message})` : ''}`);
      t.equal(rc, '0', `${c.name}: mkcomposefs accepts too (${cerr})`);
      if (r.root) c.check?.(r.root, t);
      if (r.root && rc === '0') {
        t.same(buildErofs(r.root).toBuffer(), readFileSync(join(dir, `${i}.img`)), `${c.name}: same image`);
      }
    }
  });
});

t.test('CFS_PARSE_STRICT in the environment enables strict mode; the option overrides it', async (t) => {
  const dump = `${R}/f 0 100644 1 0 0 1 0.0 - - -\n`;
  const saved = process.env['CFS_PARSE_STRICT'];
  t.teardown(() => {
    if (saved === undefined) delete process.env['CFS_PARSE_STRICT'];
    else process.env['CFS_PARSE_STRICT'] = saved;
  });
  delete process.env['CFS_PARSE_STRICT'];
  t.doesNotThrow(() => parseDumpfileSync(dump));
  process.env['CFS_PARSE_STRICT'] = '';
  t.throws(() => parseDumpfileSync(dump), /Non-zero devnum/);
  t.doesNotThrow(() => parseDumpfileSync(dump, { strict: false }));
});

t.test('requireValidDigest rejects what mkcomposefs would leave undefined', async (t) => {
  t.doesNotThrow(() => parseDumpfileSync(`${R}/f 1 100644 1 0 0 0 0.0 x - abc\n`));
  t.throws(() => parseDumpfileSync(`${R}/f 1 100644 1 0 0 0 0.0 x - abc\n`, { requireValidDigest: true }), {
    name: 'DumpfileSyntaxError',
    field: 'DIGEST',
    line: 2,
  });
});

// -------------------------------------------------------------------------------------------------
// Streaming

const SAMPLE = Buffer.from(
  `${R}/a\\x20b 3 100644 2 1000 1000 0 1700000000.5 - xyz - user.a=1 security.selinux=x\\x00\n` +
    `/d 4096 40755 2 0 0 0 0.0 - - - trusted.overlay.opaque=y\n/d/l 6 120777 1 0 0 0 0.0 ../a\\x20b - -\n` +
    `/d/h 0 @100644 0 0 0 0 0.0 /a\\x20b - -\n/e 123456789 100600 1 0 0 0 0.0 ab/cd - ${D64}\n/c 0 20644 1 0 0 259 0.0 - - -\n`,
  'latin1',
);

t.test('streaming: any chunking gives the same tree', async (t) => {
  const ref = writeDumpfile(parseDumpfileSync(SAMPLE));
  for (let split = 1; split < SAMPLE.length; split += 7) {
    const p = new DumpfileParser({ strict: true });
    p.push(SAMPLE.subarray(0, split));
    p.push(SAMPLE.subarray(split));
    t.same(writeDumpfile(p.end()), ref, `split at ${split}`);
  }
  // one byte at a time, and a Readable
  const p = new DumpfileParser();
  for (let i = 0; i < SAMPLE.length; i++) p.push(SAMPLE.subarray(i, i + 1));
  t.same(writeDumpfile(p.end()), ref, 'byte by byte');
  const fromStream = await parseDumpfile(Readable.from([SAMPLE.subarray(0, 50), SAMPLE.subarray(50)]));
  t.same(writeDumpfile(fromStream), ref, 'Readable');
  // errors carry the right line number across chunks
  const bad = Buffer.concat([SAMPLE, Buffer.from('/x/y 0 100644 1 0 0 0 0.0 - - -\n')]);
  const q = new DumpfileParser();
  t.throws(() => {
    for (let i = 0; i < bad.length; i += 13) q.push(bad.subarray(i, i + 13));
    q.end();
  }, { line: 8, field: 'PATH', reason: 'Parent directory missing for /x/y' });
});

t.test('streaming: 60k entries parse with flat per-entry cost', async (t) => {
  const lines = [R];
  for (let d = 0; d < 600; d++) {
    lines.push(`/d${d} 4096 40755 2 0 0 0 0.0 - - - user.x=1\n`);
    for (let f = 0; f < 100; f++) lines.push(`/d${d}/f${f} 100 100644 1 0 0 0 0.0 ab/cd${d}x${f} - ${D64} security.selinux=s0\\x00\n`);
  }
  const buf = Buffer.from(lines.join(''));
  const t0 = performance.now();
  const root = await parseDumpfile(Readable.from((function* () {
    for (let i = 0; i < buf.length; i += 65536) yield buf.subarray(i, i + 65536);
  })()));
  const ms = performance.now() - t0;
  let n = 0;
  for (const _ of walk(root)) n++;
  t.equal(n, 1 + 600 + 60000);
  t.comment(`parsed ${n} entries in ${ms.toFixed(0)} ms`);
});

// -------------------------------------------------------------------------------------------------
// Writer (§2.10)

t.test('writer: escaping, optional fields, hardlinks, xattrs as composefs-info prints them', async (t) => {
  const root = parseDumpfileSync(
    `${R}/sp\\x20ace\\t\\xff 2 100644 1 0 0 0 0.0 \\x2d \\x2d\\x3d - k\\x3dy=a=b\\x20\\\\ user.e=\n` +
      `/hl 0 @100644 1 0 0 0 0.0 /sp\\x20ace\\t\\xff - -\n/r 0 @100644 1 0 0 0 0.0 / - -\n/dev 0 60600 1 1 2 4294967296 -1.5 - - ${D64}\n`,
  );
  const text = writeDumpfile(root).toString('latin1');
  t.equal(
    text,
    '/ 4096 40755 2 0 0 0 0.0 - - -\n' +
      '/dev 0 60600 1 1 2 4294967296 -1.5 - - ' + D64 + '\n' +
      '/hl 2 @100644 1 0 0 0 0.0 /sp\\x20ace\\t\\xff -= - k\\x3dy=a\\x3db\\x20\\\\ user.e=\n' +
      '/r 4096 @40755 2 0 0 0 0.0  - -\n' +
      '/sp\\x20ace\\t\\xff 2 100644 1 0 0 0 0.0 \\x2d -= - k\\x3dy=a\\x3db\\x20\\\\ user.e=\n',
  );
});

t.test('writer: round trip parse → write → parse → write is stable; chunks stream', async (t) => {
  const a = writeDumpfile(parseDumpfileSync(SAMPLE));
  const b = writeDumpfile(parseDumpfileSync(a, { strict: true }));
  t.same(b, a);
  // big tree: output comes in bounded chunks
  const root = new TreeNode(Buffer.alloc(0), 0o40755);
  for (let i = 0; i < 20000; i++) {
    const f = new TreeNode(`file-${i}`, 0o100644);
    f.payload = Buffer.from(`xx/${'y'.repeat(62)}`);
    f.size = 1000n;
    root.addChild(f);
  }
  let max = 0;
  let total = 0;
  for (const c of dumpfileChunks(root)) {
    max = Math.max(max, c.length);
    total += c.length;
  }
  t.ok(max <= 256 * 1024, `largest chunk ${max} bytes`);
  t.ok(total > 1_000_000, `${total} bytes in total`);
});
