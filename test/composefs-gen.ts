/**
 * Seeded random composefs dumpfiles for the differential test against mkcomposefs 1.0.8, plus
 * invalid mutations. Everything is generated from the seed: same seed, same files.
 *
 * The generator aims at the corners of the format (spec composefs-format.md §2, §4, §5): names up
 * to 255 bytes and around '.', multi-block directories, inline content around 2048/4096,
 * external files up to petabytes, long symlinks, devices, fifos, sockets, whiteouts, hardlinks,
 * shared and unshared xattrs of every prefix (incl. trusted.overlay.*), uid/gid/nlink above
 * 65535, odd mtimes, escaping variants and strtoull quirks. The oracle decides what is valid.
 */
import { Rng } from '../scripts/lib/fuzz/rng.js';

export interface GenCase {
  /** The dumpfile bytes. */
  dump: Buffer;
  /** mkcomposefs options (e.g. ['--min-version=0', '--max-version=0']). */
  args: string[];
  /** CFS_PARSE_STRICT set. */
  strict: boolean;
  /** What was done, for failure messages. */
  label: string;
  /** Output undefined in C (uninitialized digest bytes): compare verdicts only. */
  verdictOnly?: boolean;
}

const TYPE = { dir: 0o040000, reg: 0o100000, lnk: 0o120000, chr: 0o020000, blk: 0o060000, fifo: 0o010000, sock: 0o140000 };

interface Entry {
  path: Buffer; // absolute, unescaped
  name: Buffer;
  kind: 'dir' | 'reg' | 'lnk' | 'chr' | 'blk' | 'fifo' | 'sock' | 'link';
  children?: Entry[];
  fields: string[]; // 11 fixed fields, already escaped
  xattrs: string[]; // "key=value", escaped
  linkTarget?: Entry;
}

const HEX = '0123456789abcdef';

/** Escape bytes for a dumpfile field; `extra` randomly escapes harmless bytes too. */
/** Bytes that may appear raw in any field (not space, backslash, controls). */
const SAFE = new Uint8Array(256);
for (let c = 0x21; c < 256; c++) SAFE[c] = c === 0x5c || c === 0x7f ? 0 : 1;

function esc(rng: Rng, v: Buffer, opts: { equal?: boolean; loneDash?: boolean } = {}): string {
  if (opts.loneDash && v.length === 1 && v[0] === 0x2d) return rng.chance(0.5) ? '\\x2d' : '\\x2D';
  const out: string[] = [];
  const fancy = rng.chance(0.15);
  let run = 0; // start of the current run of raw bytes
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (SAFE[c] && !(opts.equal && c === 0x3d) && !(fancy && rng.chance(0.2))) continue;
    if (i > run) out.push(v.toString('latin1', run, i));
    run = i + 1;
    if (c === 0x5c) out.push('\\\\');
    else if (c === 0x0a) out.push(rng.chance(0.7) ? '\\n' : '\\x0a');
    else if (c === 0x0d) out.push(rng.chance(0.7) ? '\\r' : '\\x0D');
    else if (c === 0x09) out.push(rng.chance(0.7) ? '\\t' : '\\x09');
    else {
      const h = HEX[c >> 4]! + HEX[c & 15]!;
      out.push('\\x' + (rng.chance(0.3) ? h.toUpperCase() : h));
    }
  }
  if (run < v.length) out.push(v.toString('latin1', run));
  return out.join('');
}

const NAME_CHARS = Buffer.from('abcdefghijklmnopqrstuvwxyz0123456789_.-');

/** A name: mostly short and printable, sometimes long, odd bytes, or sorting around '.'. */
function genName(rng: Rng, longP = 0.15): Buffer {
  const r = rng.next();
  let len: number;
  if (r < 0.85 - longP) len = rng.range(1, 12);
  else if (r < 0.85) len = rng.range(13, 60);
  else if (r < 0.85 + longP * 0.66) len = rng.range(61, 254);
  else if (r < 0.85 + longP) len = 255;
  else len = rng.range(1, 20);
  const b = Buffer.alloc(len);
  const palette = rng.next();
  for (let i = 0; i < len; i++) {
    let c: number;
    const p = rng.next();
    if (palette < 0.7 || p < 0.6) c = NAME_CHARS[rng.int(NAME_CHARS.length)]!;
    else if (p < 0.8) c = rng.range(0x01, 0x2d); // sorts before '.'
    else if (p < 0.9) c = rng.range(0x80, 0xff);
    else c = rng.pick([0x20, 0x3d, 0x40, 0x5c, 0x0a, 0x09, 0x2e, 0x7e]);
    if (c === 0x2f || c === 0) c = 0x61;
    b[i] = c;
  }
  if (rng.chance(0.08)) {
    // names around '.' and '..'
    return Buffer.from(rng.pick(['-', ',', '+', ' a', '!x', '.a', '..a', '.-', '.,', '...', '-.', '#']), 'latin1');
  }
  if ((b.length === 1 && b[0] === 0x2e) || (b.length === 2 && b[0] === 0x2e && b[1] === 0x2e)) b[0] = 0x5f;
  return b;
}

const XATTR_KEYS = [
  'user.a',
  'user.b',
  'user.foo1',
  'user.overlay.x',
  'user.overlay.whiteout',
  'user.',
  'trusted.x',
  'trusted.overlay.opaque',
  'trusted.overlay.redirect',
  'trusted.overlay.metacopy',
  'trusted.overlay.whiteouts',
  'trusted.overlay.overlay.y',
  'trusted.overlay.',
  'security.selinux',
  'security.capability',
  'system.posix_acl_access',
  'system.posix_acl_default',
  'system.posix_acl_defaultx',
  'system.other',
  'lustre.lov',
  'other.key',
  'x',
];
const XATTR_VALUES = ['', '1', 'y', 'x', 'system_u:object_r:usr_t:s0\0', 'a=b', '-', 'hello world', 'v'.repeat(100)];

function genValue(rng: Rng): Buffer {
  if (rng.chance(0.6)) return Buffer.from(rng.pick(XATTR_VALUES), 'latin1');
  const n = rng.chance(0.95) ? rng.range(0, 40) : rng.range(41, 1200);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = rng.chance(0.8) ? rng.range(0x21, 0x7e) : rng.int(256);
  return b;
}

function genKey(rng: Rng): Buffer {
  if (rng.chance(0.7)) return Buffer.from(rng.pick(XATTR_KEYS), 'latin1');
  const prefix = rng.pick(['user.', 'trusted.', 'security.', 'trusted.overlay.', 'system.posix_acl_access', 'lustre.', '']);
  const n = rng.chance(0.9) ? rng.range(1, 20) : rng.range(100, 255 - prefix.length);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = rng.chance(0.9) ? rng.range(0x61, 0x7a) : rng.range(0x21, 0xff);
  for (let i = 0; i < n; i++) if (b[i] === 0) b[i] = 0x61;
  return Buffer.concat([Buffer.from(prefix, 'latin1'), b]);
}

function genXattrs(rng: Rng, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    out.push(`${esc(rng, genKey(rng), { equal: true })}=${esc(rng, genValue(rng))}`);
  }
  return out;
}

function num(rng: Rng, kind: 'small' | 'id' | 'u64'): string {
  const r = rng.next();
  if (kind === 'small') return String(rng.range(0, 5));
  if (kind === 'id') {
    if (r < 0.6) return String(rng.range(0, 2000));
    if (r < 0.8) return String(rng.range(65535, 70000));
    if (r < 0.9) return String(4294967296n + BigInt(rng.int(100)));
    if (r < 0.95) return String(rng.bigint(64));
    return rng.pick(['+7', '\t12', '-1', '00042', '18446744073709551616']);
  }
  if (r < 0.5) return String(rng.range(0, 100000));
  if (r < 0.8) return String(rng.bigint(rng.range(1, 64)));
  return rng.pick(['18446744073709551615', '99999999999999999999', '-5', '+3', '0']);
}

function mtime(rng: Rng, base: { sec: string; nsec: string }): string {
  if (rng.chance(0.7)) return `${base.sec}.${base.nsec}`;
  const sec = rng.pick([
    '0',
    '1633950376',
    '1700000000',
    String(rng.range(0, 2 ** 31)),
    '9223372036854775808',
    '18446744073709551615',
    '-5',
    '+17',
    String(rng.bigint(64)),
  ]);
  const nsec = rng.pick(['0', '1', '999999999', '1000000000', '4294967297', String(rng.range(0, 999999999))]);
  return `${sec}.${nsec}`;
}

function digestHex(rng: Rng): string {
  let s = '';
  for (let i = 0; i < 64; i++) s += HEX[rng.int(16)]!;
  return rng.chance(0.2) ? s.toUpperCase() : s;
}

export interface GenOptions {
  /** Approximate number of entries. */
  size: number;
}

/** A random valid-looking dumpfile (lines) and the entries, before any mutation. */
export function genDump(rng: Rng, opts: GenOptions): { lines: string[]; entries: Entry[] } {
  const base = { sec: rng.pick(['0', '1700000000', String(rng.range(1, 2 ** 31))]), nsec: rng.pick(['0', '0', '5', String(rng.int(1e9))]) };
  const root: Entry = { path: Buffer.from('/'), name: Buffer.alloc(0), kind: 'dir', children: [], fields: [], xattrs: [] };
  const all: Entry[] = [root];
  const dirs: Entry[] = [root];
  const files: Entry[] = [];
  const names = new Map<Entry, Set<string>>([[root, new Set()]]);
  const rootXattrs = rng.chance(0.5);
  root.fields = ['/', num(rng, 'u64'), (0o040000 | rng.pick([0o755, 0o555, 0o700, 0o1777])).toString(8), num(rng, 'id'), rng.chance(0.8) ? '0' : num(rng, 'id'), rng.chance(0.8) ? '0' : num(rng, 'id'), '0', mtime(rng, base), '-', '-', '-'];
  if (rootXattrs) root.xattrs = genXattrs(rng, rng.range(1, 4));
  if (rng.chance(0.2)) root.xattrs.push(`security.selinux=${esc(rng, Buffer.from('system_u:object_r:root_t:s0\0', 'latin1'))}`);

  const bigDir = rng.chance(0.15) ? rng.range(100, 450) : 0;
  const lean = opts.size + bigDir > 100; // big trees: keep the bytes per entry small
  const longP = lean ? 0.02 : 0.15;
  const addChild = (parent: Entry, kind: Entry['kind'], forced?: Buffer): Entry | undefined => {
    const set = names.get(parent)!;
    let name = forced ?? genName(rng, longP);
    for (let tries = 0; set.has(name.toString('latin1')); tries++) {
      if (tries > 5) return undefined;
      name = genName(rng, longP);
    }
    set.add(name.toString('latin1'));
    const path = parent === root ? Buffer.concat([Buffer.from('/'), name]) : Buffer.concat([parent.path, Buffer.from('/'), name]);
    const e: Entry = { path, name, kind, fields: [], xattrs: [] };
    parent.children!.push(e);
    all.push(e);
    if (kind === 'dir') {
      e.children = [];
      dirs.push(e);
      names.set(e, new Set());
    } else if (kind !== 'link') files.push(e);
    return e;
  };

  const total = opts.size;
  // Sometimes one big directory (multi-block) and root hex names that suppress stubs.
  if (bigDir) {
    const d = addChild(root, 'dir')!;
    for (let i = 0; i < bigDir; i++) addChild(d, rng.chance(0.9) ? 'reg' : 'lnk');
  }
  if (rng.chance(0.25)) for (let i = 0; i < rng.range(1, 5); i++) addChild(root, rng.pick(['reg', 'dir', 'chr'] as const), Buffer.from(rng.int(256).toString(16).padStart(2, '0')));
  while (all.length < total) {
    const parent = rng.chance(0.15) && dirs.length < 40 ? dirs[dirs.length - 1]! : rng.pick(dirs);
    const r = rng.next();
    const kind: Entry['kind'] =
      r < 0.15 ? 'dir' : r < 0.6 ? 'reg' : r < 0.72 ? 'lnk' : r < 0.78 ? 'chr' : r < 0.81 ? 'blk' : r < 0.85 ? 'fifo' : r < 0.87 ? 'sock' : 'link';
    addChild(parent, kind);
  }

  // Shared xattr group: many inodes get the same pairs; sometimes > 128 on one inode.
  const sharedPool = genXattrs(rng, rng.range(1, 6));
  const bigShared = rng.chance(0.1) ? Array.from({ length: 135 }, (_, i) => `user.s${i}=${i % 7}`) : undefined;

  for (const e of all) {
    if (e === root) continue;
    const xattrs: string[] = [];
    if (rng.chance(0.4)) xattrs.push(...sharedPool.slice(0, rng.range(1, sharedPool.length)));
    if (rng.chance(lean ? 0.1 : 0.3)) xattrs.push(...genXattrs(rng, rng.range(1, 5)));
    if (bigShared && rng.chance(Math.min(0.1, 4 / all.length))) xattrs.push(...bigShared);
    e.xattrs = xattrs;
    const perm = rng.chance(0.8) ? rng.pick([0o644, 0o755, 0o600, 0o777]) : rng.int(0o10000);
    const uid = rng.chance(0.7) ? '0' : num(rng, 'id');
    const gid = rng.chance(0.7) ? '0' : num(rng, 'id');
    const nlink = rng.chance(0.8) ? '1' : num(rng, 'id');
    const mt = mtime(rng, base);
    switch (e.kind) {
      case 'dir':
        e.fields = ['', num(rng, 'u64'), (TYPE.dir | perm).toString(8), rng.chance(0.7) ? '2' : num(rng, 'id'), uid, gid, '0', mt, '-', '-', '-'];
        break;
      case 'reg': {
        const r = rng.next();
        if (r < 0.35) {
          // inline content, sizes around 2048/4096/5000
          const n = rng.chance(lean ? 0.01 : 0.15)
            ? rng.pick([2047, 2048, 2049, 4095, 4096, 4097, 4999, 5000])
            : rng.chance(0.8)
              ? rng.range(1, 100)
              : rng.range(1, 5000);
          const c = Buffer.alloc(n);
          for (let i = 0; i < n; i++) c[i] = rng.chance(0.9) ? rng.range(0x21, 0x7e) : rng.int(256);
          e.fields = ['', String(n), (TYPE.reg | perm).toString(8), nlink, uid, gid, '0', mt, '-', esc(rng, c, { loneDash: true }), rng.chance(0.5) ? digestHex(rng) : '-'];
        } else if (r < 0.85) {
          // external
          const size = rng.chance(0.6)
            ? String(rng.range(1, 10_000_000))
            : rng.pick(['1', '4096', '4097', '8796093022208', '8796093022209', String(rng.bigint(50)), '9000000000000000', '9007199254740992', '4503599627370496']);
          const d = digestHex(rng);
          const payload = rng.chance(0.8)
            ? `${d.slice(0, 2).toLowerCase()}/${d.slice(2).toLowerCase()}`
            : rng.pick(['-', '/abs/path', esc(rng, genName(rng)), '\\x00trunc', 'x']);
          e.fields = ['', size, (TYPE.reg | perm).toString(8), nlink, uid, gid, '0', mt, payload, '-', rng.chance(0.85) ? d : '-'];
        } else {
          e.fields = ['', '0', (TYPE.reg | perm).toString(8), nlink, uid, gid, '0', mt, rng.chance(0.8) ? '-' : 'x/y', rng.chance(0.5) ? '-' : '', '-'];
        }
        break;
      }
      case 'lnk': {
        const n = rng.chance(lean ? 0.99 : 0.8) ? rng.range(1, 100) : rng.pick([rng.range(100, 4095), 4095, 4000, 3914, 4040]);
        const t = Buffer.alloc(n);
        for (let i = 0; i < n; i++) t[i] = rng.chance(0.95) ? rng.range(0x21, 0x7e) : rng.range(1, 255);
        if (n === 1 && t[0] === 0x2d) t[0] = 0x61;
        e.fields = ['', rng.chance(0.97) ? String(n) : String(rng.int(100)), (TYPE.lnk | 0o777).toString(8), nlink, uid, gid, '0', mt, esc(rng, t, { loneDash: true }), '-', '-'];
        break;
      }
      case 'chr':
      case 'blk': {
        const whiteout = e.kind === 'chr' && rng.chance(0.5);
        const rdev = whiteout ? '0' : rng.pick([String(rng.range(1, 70000)), '259', String(4294967296n + BigInt(rng.int(3))), '4294967296', String(rng.bigint(40))]);
        e.fields = ['', rng.chance(0.9) ? '0' : '1', ((e.kind === 'chr' ? TYPE.chr : TYPE.blk) | perm).toString(8), nlink, uid, gid, rdev, mt, '-', '-', '-'];
        break;
      }
      case 'fifo':
      case 'sock':
        e.fields = ['', '0', ((e.kind === 'fifo' ? TYPE.fifo : TYPE.sock) | perm).toString(8), nlink, uid, gid, '0', mt, '-', '-', '-'];
        break;
      case 'link':
        break;
    }
    e.fields[0] = esc(rng, e.path);
  }
  // Hardlinks: to a regular/other non-directory entry (rarely another link or a directory).
  const links = all.filter((e) => e.kind === 'link');
  const targets = files.filter((f) => f.kind !== 'link');
  for (const l of links) {
    let t: Entry | undefined;
    const r = rng.next();
    if (r < 0.9 || targets.length === 0) t = targets.length ? rng.pick(targets) : undefined;
    else if (r < 0.95) {
      const others = links.filter((x) => x !== l && x.linkTarget && x.linkTarget.kind !== 'link');
      // A draw either way, so that the cases a seed generates do not change.
      const k = rng.int(others.length);
      t = others[k];
    }
    else t = rng.pick(dirs);
    if (!t) {
      l.kind = 'reg';
      l.fields = [esc(rng, l.path), '0', '100644', '1', '0', '0', '0', `${base.sec}.${base.nsec}`, '-', '-', '-'];
      continue;
    }
    l.linkTarget = t;
    l.xattrs = rng.chance(0.2) ? ['ignored=1'] : [];
    const mode = '@' + (rng.pick([TYPE.reg, TYPE.lnk, TYPE.chr]) | 0o644).toString(8);
    const garbage = rng.chance(0.3);
    l.fields = [esc(rng, l.path), garbage ? 'x' : '0', mode, garbage ? '?' : '1', '0', garbage ? 'bad' : '0', '0', garbage ? 'nope' : '0.0', esc(rng, t.path, { loneDash: true }), garbage ? '\\q' : '-', '-'];
  }

  // Lines in a valid order: pre-order, siblings shuffled sometimes.
  const lines: string[] = [];
  const visit = (e: Entry): void => {
    lines.push([...e.fields, ...e.xattrs].join(' '));
    if (e.children) {
      const kids = [...e.children];
      if (rng.chance(0.3)) kids.sort(() => rng.next() - 0.5);
      for (const c of kids) visit(c);
    }
  };
  visit(root);
  return { lines, entries: all };
}

const VERSION_ARGS: string[][] = [
  [],
  [],
  [],
  ['--min-version=0', '--max-version=0'],
  ['--min-version=1', '--max-version=1'],
  ['--min-version=1'],
  ['--max-version=1'],
  ['--max-version=0'],
  ['--min-version=0'],
];

/** Invalid (or quirky) mutations of a valid dump; each returns a label. */
const MUTATIONS: ((rng: Rng, lines: string[]) => string)[] = [
  (rng, l) => {
    const i = rng.range(1, l.length - 1);
    const f = l[i]!.split(' ');
    const k = rng.pick([1, 2, 3, 4, 5, 6, 7]);
    f[k] = rng.pick(['', 'x', '12a', '-', ' ', '1.2.3', '0x10', '+', '9'.repeat(30)]);
    l[i] = f.join(' ');
    return `bad numeric field ${k}`;
  },
  (rng, l) => {
    const i = rng.range(0, l.length - 1);
    const k = rng.range(0, 3);
    const f = l[i]!.split(' ');
    const bad = rng.pick(['\\q', 'a\\', '\\x4', '\\xZZ', '\\x', '\\xg0']);
    // PATH, PAYLOAD, CONTENT or an xattr
    if (k === 0) f[0] += bad;
    else if (k === 1) f[8] = bad;
    else if (k === 2) f[9] = bad;
    else f.push(rng.chance(0.5) ? `user.k=${bad}` : `${bad}=v`);
    l[i] = f.join(' ');
    return 'bad escape';
  },
  (rng, l) => {
    const i = rng.range(0, l.length - 1);
    l[i] = l[i]! + rng.pick(['\0', ' a\0b=1']);
    return 'embedded NUL';
  },
  (rng, l) => {
    l.splice(rng.range(1, l.length), 0, '');
    return 'empty line';
  },
  (_rng, l) => {
    l.push(l[0]!);
    return 'second root';
  },
  (rng, l) => {
    if (l.length < 2) return 'noop';
    const i = rng.range(1, l.length - 1);
    l.push(l[i]!);
    return 'duplicate path';
  },
  (rng, l) => {
    l.splice(1, 0, rng.pick(['/. 0 100644 1 0 0 0 0.0 - - -', '/.. 0 40755 2 0 0 0 0.0 - - -', '// 0 100644 1 0 0 0 0.0 - - -', `/${'n'.repeat(256)} 0 100644 1 0 0 0 0.0 - - -`, '/nodir/x 0 100644 1 0 0 0 0.0 - - -', '/a/ 0 100644 1 0 0 0 0.0 - - -', 'rel 0 100644 1 0 0 0 0.0 - - -', '/\\x00 0 100644 1 0 0 0 0.0 - - -']));
    return 'bad path';
  },
  (rng, l) => {
    const i = rng.range(1, l.length - 1);
    const f = l[i]!.split(' ');
    f[2] = rng.pick(['644', '0', '170644', '@40755', '@', '20720777', '1100644', '-100644']);
    l[i] = f.join(' ');
    return `mode ${f[2]}`;
  },
  (rng, l) => {
    l.push(rng.pick(['/hl 0 @100644 1 0 0 0 0.0 /does/not/exist - -', '/hl 0 @100644 1 0 0 0 0.0 - - -', '/hl 0 @100644 1 0 0 0 0.0 /hl - -', '/hl 0 @100644 1 0 0 0 0.0 // - -']));
    return 'bad hardlink';
  },
  (_rng, l) => {
    l.push('/cy1 0 @100644 1 0 0 0 0.0 /cy2 - -', '/cy2 0 @100644 1 0 0 0 0.0 /cy1 - -');
    return 'hardlink cycle';
  },
  (rng, l) => {
    l.push(rng.pick([`/sl 1 120777 1 0 0 0 0.0 - - -`, `/sl 4096 120777 1 0 0 0 0.0 ${'t'.repeat(4096)} - -`, `/sl 0 120777 1 0 0 0 0.0  - -`, `/f 0 100644 1 0 0 0 0.0 ${'p'.repeat(4096)} - -`, `/sl 3 120777 1 0 0 0 0.0 abc abc -`, `/sl 5 120777 1 0 0 0 0.0 abc - -`]));
    return 'symlink/payload';
  },
  (rng, l) => {
    l.push(rng.pick(['/c 3 100644 1 0 0 0 0.0 - ab -', `/c 5001 100644 1 0 0 0 0.0 - ${'c'.repeat(5001)} -`, '/c 0 100644 1 0 0 0 0.0 -  -', '/c 2 100644 1 0 0 0 0.0 - \\x2d\\x2d -']));
    return 'content';
  },
  (rng, l) => {
    const i = rng.range(0, l.length - 1);
    l[i] = l[i]! + rng.pick([' noequals', ' =v', '  ', ' ', ` ${'k'.repeat(256)}=v`, ` user.big=${'v'.repeat(33000)}`, ` user.a\\x3db=1 user.a\\x3db=2`, ' user.dup=1 user.dup=22']);
    return 'xattr';
  },
  (_rng, l) => {
    l.push(`/bigx 0 100644 1 0 0 0 0.0 - - - ${Array.from({ length: 3000 }, (_, i) => `user.k${i}=${'v'.repeat(20)}`).join(' ')}`);
    return 'too many xattrs';
  },
  (rng, l) => {
    // near the budget: the writer's own additions (metacopy/redirect/escape) overflow it
    const n = rng.range(32550, 32740);
    l.push(`/budget 100 100644 1 0 0 0 0.0 ab/cd - - user.big=${'v'.repeat(n - 12 - 7 - 8)}`);
    return `budget ${n}`;
  },
  (rng, l) => {
    l.push(`/huge ${rng.pick(['9500000000000000', '18446744073709551615', '9007199254740993', '9007199254740992'])} 100644 1 0 0 0 0.0 - - -`);
    return 'huge external';
  },
  (rng, l) => {
    const i = rng.range(1, l.length - 1);
    const f = l[i]!.split(' ');
    f[10] = rng.pick(['abc', '', 'zz' + '0'.repeat(62), '0'.repeat(64) + 'ff', '0'.repeat(70), '\\x30'.repeat(64)]);
    l[i] = f.join(' ');
    return 'digest text';
  },
  (rng, l) => {
    // GID/RDEV parse bug: only reported when UID is 0
    const i = rng.range(1, l.length - 1);
    const f = l[i]!.split(' ');
    if (f[2]?.startsWith('@')) return 'noop';
    f[4] = rng.pick(['0', '5']);
    f[rng.pick([5, 6])] = 'bad';
    l[i] = f.join(' ');
    return 'gid/rdev quirk';
  },
  (rng, l) => {
    l.push(rng.pick(['/nzdev 0 100644 1 0 0 7 0.0 - - -', '/fifo 0 10644 1 0 0 3 0.0 - - -']));
    return 'rdev on non-device';
  },
  (_rng, l) => {
    l.unshift('/early 0 100644 1 0 0 0 0.0 - - -');
    return 'root not first';
  },
];

/** Generate `n` cases from `seed`. */
export function genCases(seed: number, n: number): GenCase[] {
  const rng = new Rng(seed);
  const cases: GenCase[] = [];
  for (let c = 0; c < n; c++) {
    const size = rng.chance(0.06) ? rng.range(300, 900) : rng.range(1, 60);
    const { lines } = genDump(rng, { size });
    const labels: string[] = [`size ${size}`];
    let verdictOnly = false;
    if (rng.chance(0.35)) {
      // most mutations edit a line other than the root's
      if (lines.length < 2) lines.push('/pad 0 100644 1 0 0 0 0.0 - - -');
      const m = rng.int(MUTATIONS.length);
      const label = MUTATIONS[m]!(rng, lines);
      labels.push(label);
      if (label === 'digest text') verdictOnly = true;
    }
    const strict = rng.chance(0.3);
    let text = lines.join('\n');
    const noNewline = rng.chance(0.08);
    if (!noNewline) text += '\n';
    else labels.push('no trailing newline');
    let args = rng.pick(VERSION_ARGS);
    if (rng.chance(0.03)) args = rng.pick([['--max-version=2'], ['--min-version=2'], ['--min-version=-1'], ['--min-version=1', '--max-version=0']]);
    if (strict) labels.push('strict');
    if (args.length) labels.push(args.join(' '));
    cases.push({ dump: Buffer.from(text, 'latin1'), args, strict, label: labels.join(', '), verdictOnly });
  }
  return cases;
}
