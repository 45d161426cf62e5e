import t from 'tap';
import { createHash } from 'node:crypto';
import { decode, encode, typeInfo } from '../src/gvariant/codec.js';
import {
  parseCommit,
  parseDirMeta,
  parseDirTree,
  parseFileHeader,
  serializeCommit,
  serializeDirMeta,
  serializeDirTree,
  serializeFileHeader,
  serializeXattrs,
} from '../src/gvariant/ostree-types.js';
import { contentChecksum } from '../src/ostree/checksum.js';
import { GVariantError } from '../src/errors.js';
import { prng } from '../scripts/lib/sample-tree.js';
import { readDirTreeCanonical } from '../src/gvariant/dirtree-fast.js';

const hex = (s: string) => Buffer.from(s.replace(/[\s|]/g, ''), 'hex');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('worked examples from the spec (§1.7, §1.9)', async (t) => {
  t.same(encode('as', ['a', 'bc', '']), hex('61 00 62 63 00 00 | 02 05 06'));
  t.same(encode('(sys)', ['a', 9, 'b']), hex('61 00 09 62 00 02'));
  t.same(
    encode('a{sv}', [
      ['a', { type: 's', value: 'x' }],
      ['bb', { type: 'u', value: 1 }],
    ]),
    hex('6100000000000000 78000073 02 000000 6262000000000000 01000000 0075 03 0d1f'),
  );
  t.same(encode('ms', 'ab'), hex('61 62 00 00'));
  t.same(encode('mu', 7), hex('07 00 00 00'));
  t.same(encode('v', { type: 't', value: 5n }), hex('05 00 00 00 00 00 00 00 00 74'));
  t.equal(typeInfo('(ty)').fixed, 16);
  t.equal(typeInfo('()').fixed, 1);
  t.same(encode('()', []), hex('00'));
  // 60 strings of "abcd": 300-byte body + 60 offsets needs 2-byte offsets, 420 bytes in all.
  t.equal(encode('as', Array(60).fill('abcd')).length, 420);
});

t.test('decode inverts encode for every value shape', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['a{sv}', [['k', { type: 'aay', value: [Buffer.from('x'), Buffer.alloc(64, 1)] }], ['n', { type: 'b', value: true }]]],
    ['(uuua(ayay))', [1, 2, 3, [[Buffer.from('user.a\0'), Buffer.from('v')]]]],
    ['a(say)', [['x', Buffer.alloc(32, 7)], ['yy', Buffer.alloc(32, 8)]]],
    ['(xtdnqhi)', [-5n, 2n ** 64n - 1n, 1.5, -3, 65535, -1, 2147483647]],
    ['maay', null],
    ['maay', [Buffer.from('q')]],
    ['av', [{ type: 'mi', value: null }, { type: '(sg)', value: ['s', 'a{sv}'] }, { type: 'o', value: '/a/b' }]],
    ['as', Array.from({ length: 3000 }, (_, i) => `string-${i}`)], // 4-byte offsets
  ];
  for (const [type, value] of cases) {
    const bytes = encode(type, value as never);
    t.same(decode(type, bytes), value, `${type} roundtrip`);
  }
});

t.test('non-normal, truncated and ill-typed input is rejected with GVariantError', async (t) => {
  const good = encode('(uuua(ayay))', [1, 2, 3, [[Buffer.from('user.a\0'), Buffer.from('v')]]]);
  const bad: Array<[string, string, Buffer]> = [
    ['truncated fixed', 'u', Buffer.from([1, 2, 3])],
    ['trailing byte after fixed tuple', '(uu)', Buffer.alloc(9)],
    ['boolean 2', 'b', Buffer.from([2])],
    ['string without NUL', 's', Buffer.from('abc')],
    ['string with inner NUL', 's', Buffer.from('a\0b\0')],
    ['invalid UTF-8', 's', Buffer.from([0xff, 0xfe, 0])],
    ['array size not a multiple', 'au', Buffer.alloc(6)],
    ['offset out of range', 'as', Buffer.from([0x61, 0x00, 0x09])],
    ['non-minimal offset width', 'as', Buffer.from([0x61, 0x00, 0x02, 0x00])],
    ['nonzero padding', 'a{sv}', (() => { const b = encode('a{sv}', [['a', { type: 'u', value: 1 }]]); b[3] = 1; return b; })()],
    ['variant with bad type', 'v', Buffer.from([1, 0, 0x7a])],
    ['truncated dirmeta', '(uuua(ayay))', good.subarray(0, good.length - 3)],
  ];
  for (const [name, type, data] of bad) {
    t.throws(() => decode(type, data), GVariantError, name);
  }
  t.throws(() => typeInfo('a{vs}'), GVariantError, 'dict key must be basic');
  t.throws(() => typeInfo('(s'), GVariantError, 'unterminated tuple type');
});

t.test('random mutations never escape as anything but GVariantError', async (t) => {
  const rnd = prng(1234);
  const commit = serializeCommit({
    metadata: [['version', { type: 's', value: '1.0' }], ['ostree.ref-binding', { type: 'as', value: ['main'] }]],
    parent: null,
    related: [],
    subject: 'subject',
    body: 'body',
    timestamp: 1577836800n,
    rootTree: 'c6'.repeat(32),
    rootMeta: '44'.repeat(32),
  });
  let rejected = 0;
  let accepted = 0;
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(commit);
    const n = 1 + (rnd() % 3);
    for (let j = 0; j < n; j++) b[rnd() % b.length] = rnd() & 0xff;
    const cut = rnd() % 4 === 0 ? b.subarray(0, rnd() % b.length) : b;
    try {
      const parsed = parseCommit(cut);
      accepted++;
      // Whatever is accepted is exactly what we would write again.
      if (!serializeCommit(parsed).equals(cut)) t.fail(`mutation ${i} accepted but does not re-serialize identically`);
    } catch (e) {
      if (!(e instanceof GVariantError)) t.fail(`mutation ${i} threw ${(e as Error).constructor.name}: ${(e as Error).message}`);
      rejected++;
    }
  }
  t.equal(rejected + accepted, 3000);
  t.ok(rejected > 1000, `many mutations rejected (${rejected}/3000)`);
});

t.test('ostree objects: known bytes and checksums from the spec', async (t) => {
  // §2.4: root:root 0755 dirmeta without xattrs.
  const dm = serializeDirMeta({ uid: 0, gid: 0, mode: 0o40755, xattrs: [] });
  t.same(dm, hex('00000000 00000000 000041ed'));
  t.equal(sha(dm), '446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488');
  t.same(parseDirMeta(dm), { uid: 0, gid: 0, mode: 0o40755, xattrs: [] });
  // §3.2 verified content checksums.
  const reg = { uid: 0, gid: 0, mode: 0o100644, rdev: 0, symlinkTarget: '', xattrs: [] };
  t.equal(contentChecksum(reg, Buffer.from('hello\n')), '44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b');
  t.equal(contentChecksum(reg), 'cc700d46f407c6c5ab2d5dde474366a928b7398277e61162e7f8ec06f469f07e');
  t.equal(
    contentChecksum({ ...reg, mode: 0o120777, symlinkTarget: 'a.txt' }),
    'f379a4b359f3e8deb971eef3e40a492fec37696c0169a600789f0bc62c43b535',
  );
  // Xattrs are sorted before hashing, so the order given does not matter.
  const xa = [
    { name: Buffer.from('user.zeta'), value: Buffer.from('z') },
    { name: Buffer.from('user.alpha'), value: Buffer.from('A\0') },
  ];
  t.equal(contentChecksum({ ...reg, xattrs: xa }, Buffer.from('data')), '55879255badd0806612f1e19e57bfe1601dfffd55b720cbade26d22161b60455');
  t.same(serializeXattrs([xa[1]!, xa[0]!]), hex('757365722e616c70686100 4100 0b | 757365722e7a65746100 7a 0a | 0e 1a'));
  // §2.3: a dirtree with one file "b".
  const dt = serializeDirTree({ files: [{ name: 'b', checksum: 'ab'.repeat(32) }], dirs: [] });
  t.equal(dt.length, 37);
  t.same(parseDirTree(dt).files[0], { name: 'b', checksum: 'ab'.repeat(32) });
  const header = serializeFileHeader(reg);
  t.same(header, hex('00000000 00000000 000081a4 00000000 00 11'));
  t.same(parseFileHeader(header), reg);
});

t.test('ostree object validation names the problem', async (t) => {
  const unsorted = encode('(a(say)a(sayay))', [[['b', Buffer.alloc(32)], ['a', Buffer.alloc(32)]], []]);
  t.throws(() => parseDirTree(unsorted, 'dirtree X'), /dirtree X: files: "a" is not sorted/);
  const dotdot = encode('(a(say)a(sayay))', [[['..', Buffer.alloc(32)]], []]);
  t.throws(() => parseDirTree(dotdot), /invalid file name "\.\."/);
  const shortCsum = encode('(a(say)a(sayay))', [[['a', Buffer.alloc(31)]], []]);
  t.throws(() => parseDirTree(shortCsum), /checksum must be 32 bytes/);
  const notDir = serializeDirMeta({ uid: 0, gid: 0, mode: 0o100644, xattrs: [] });
  t.throws(() => parseDirMeta(notDir, 'dirmeta Y'), /dirmeta Y: mode 0100644 is not a directory/);
  const dev = serializeFileHeader({ uid: 0, gid: 0, mode: 0o20644, rdev: 0, symlinkTarget: '', xattrs: [] });
  t.throws(() => parseFileHeader(dev), /neither a regular file nor a symlink/);
});

t.test('dirtree fast reader: the codec’s value for normal-form data, null or the same value for anything else', async (t) => {
  const rnd = prng(4321);
  const name = (): string => {
    const len = 1 + (rnd() % (rnd() % 8 === 0 ? 255 : 12));
    let s = 'n';
    while (Buffer.byteLength(s) < len) s += rnd() % 10 === 0 ? 'é' : String.fromCharCode(0x21 + (rnd() % 90)).replace('/', '_');
    return s;
  };
  const csum = (): string => Buffer.from(Array.from({ length: 32 }, () => rnd() & 0xff)).toString('hex');
  // Entry counts that put the arrays and the tuple across the 1-, 2- and 4-byte offset sizes.
  const trees: Buffer[] = [];
  for (const [nf, nd] of [[0, 0], [1, 0], [0, 1], [2, 3], [4, 1], [40, 20], [1500, 300], [3000, 0]] as const) {
    const files = new Map<string, string>();
    const dirs = new Map<string, { tree: string; meta: string }>();
    while (files.size < nf) files.set(name(), csum());
    while (dirs.size < nd) {
      const n = name();
      if (!files.has(n)) dirs.set(n, { tree: csum(), meta: csum() });
    }
    trees.push(
      serializeDirTree({
        files: [...files].map(([n, checksum]) => ({ name: n, checksum })),
        dirs: [...dirs].map(([n, d]) => ({ name: n, ...d })),
      }),
    );
  }
  t.ok(trees.some((b) => b.length > 0xffff), 'one tree needs 4-byte offsets');
  const viaCodec = (b: Buffer) => {
    const [files, dirs] = decode('(a(say)a(sayay))', b) as [Array<[string, Buffer]>, Array<[string, Buffer, Buffer]>];
    return {
      files: files.map(([n, c]) => ({ name: n, checksum: c.toString('hex') })),
      dirs: dirs.map(([n, a, m]) => ({ name: n, tree: a.toString('hex'), meta: m.toString('hex') })),
    };
  };
  const viaFast = (b: Buffer) => {
    const r = readDirTreeCanonical(b);
    return r && {
      files: r.files.map((f) => ({ name: f.name.toString(), checksum: f.checksum.toString('hex') })),
      dirs: r.dirs.map((d) => ({ name: d.name.toString(), tree: d.tree.toString('hex'), meta: d.meta.toString('hex') })),
    };
  };
  for (const b of trees) t.same(viaFast(b), viaCodec(b), `${b.length} bytes: same value as the codec`);
  let fastAccepted = 0;
  let codecOnly = 0;
  for (let i = 0; i < 6000; i++) {
    const src = trees[i % 6]!;
    const b = Buffer.from(src);
    const n = 1 + (rnd() % 3);
    for (let j = 0; j < n && b.length > 0; j++) b[rnd() % b.length] = rnd() & 0xff;
    const cut = rnd() % 4 === 0 ? b.subarray(0, rnd() % (b.length + 1)) : rnd() % 8 === 0 ? Buffer.concat([b, Buffer.from([rnd() & 0xff])]) : b;
    const fast = viaFast(cut);
    let codec: ReturnType<typeof viaCodec> | null = null;
    try {
      codec = viaCodec(cut);
    } catch (e) {
      if (!(e instanceof GVariantError)) t.fail(`mutation ${i}: codec threw ${(e as Error).message}`);
    }
    if (fast) {
      fastAccepted++;
      // Whatever the fast reader accepts, the codec accepts with the same value.
      if (!codec) t.fail(`mutation ${i}: fast reader accepted what the codec rejects`);
      else if (JSON.stringify(codec) !== JSON.stringify(fast)) t.fail(`mutation ${i}: values differ`);
    } else if (codec) {
      // Refusing more than the codec is allowed (the codec then decides), but it must be rare: only
      // checksums of another length, which the codec's caller then rejects.
      if (codec.files.every((f) => f.checksum.length === 64) && codec.dirs.every((d) => d.tree.length === 64 && d.meta.length === 64)) {
        t.fail(`mutation ${i}: the codec accepts a well-formed dirtree the fast reader refused`);
      }
      codecOnly++;
    }
  }
  t.ok(fastAccepted > 100, `some mutations stay valid (${fastAccepted}/6000), e.g. changed checksum bytes`);
  t.pass(`${codecOnly} mutations the codec decodes but only with checksums that are not 32 bytes`);
  // Framed consistently but wider than needed (not normal form): refused by both. A body of 254
  // bytes + one offset fits 1-byte offsets (255 in all) and 2-byte ones (256): names of 221, 220
  // and 219 bytes put the element, the array and the tuple on that boundary.
  const le = (v: number, w: number): Buffer => {
    const b = Buffer.alloc(w);
    b.writeUIntLE(v, 0, w);
    return b;
  };
  const framed = (nameLen: number, elemW: number, arrW: number, tupW: number): Buffer => {
    const elem = Buffer.concat([Buffer.from(`${'n'.repeat(nameLen)}\0`), Buffer.alloc(32, 7), le(nameLen + 1, elemW)]);
    const arr = Buffer.concat([elem, le(elem.length, arrW)]);
    return Buffer.concat([arr, le(arr.length, tupW)]);
  };
  for (const [nameLen, normalW, wideW, what] of [
    [221, [1, 2, 2], [2, 2, 2], 'element'],
    [220, [1, 1, 2], [1, 2, 2], 'array'],
    [219, [1, 1, 1], [1, 1, 2], 'tuple'],
  ] as const) {
    const normal = encode('(a(say)a(sayay))', [[['n'.repeat(nameLen), Buffer.alloc(32, 7)]], []]);
    t.same(framed(nameLen, ...normalW), normal, `${what}: the normal form uses the narrow offsets`);
    t.ok(readDirTreeCanonical(normal), `${what}: normal form read`);
    const wide = framed(nameLen, ...wideW);
    t.equal(readDirTreeCanonical(wide), null, `${what} framed wider than needed: the fast reader refuses it`);
    t.throws(() => decode('(a(say)a(sayay))', wide), /not in normal form/, `${what} framed wider than needed: so does the codec`);
    t.throws(() => parseDirTree(wide), /not in normal form/, `${what} framed wider than needed: parseDirTree refuses it`);
  }
  // A name that starts with U+FEFF is an ordinary UTF-8 string: both read it, keeping the BOM.
  const bom = encode('(a(say)a(sayay))', [[['\uFEFFfoo', Buffer.alloc(32, 1)]], []]);
  t.equal(parseDirTree(bom).files[0]!.name, '\uFEFFfoo', 'a leading U+FEFF is kept (fast path)');
  t.equal((decode('(a(say)a(sayay))', bom) as [[[string, Buffer]]])[0][0][0], '\uFEFFfoo', 'and by the codec');
  // parseDirTree gives the same errors either way.
  const bad = encode('(a(say)a(sayay))', [[['b', Buffer.alloc(32, 1)], ['a', Buffer.alloc(32, 2)]], []]);
  t.ok(readDirTreeCanonical(bad), 'encoded in normal form');
  t.throws(() => parseDirTree(bad, 'dirtree X'), /dirtree X: files: "a" is not sorted after "b"/, 'unsorted names (fast path)');
});
