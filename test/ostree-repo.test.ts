/**
 * The Repo API and GVariant codec against real repositories made by the `ostree` CLI, in every
 * repository mode libostree writes.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { Repo, ObjectType } from '../src/ostree/repo.js';
import {
  parseCommit,
  parseDirMeta,
  parseDirTree,
  serializeCommit,
  serializeDirMeta,
  serializeDirTree,
  serializeMetadata,
} from '../src/gvariant/ostree-types.js';
import { contentChecksum } from '../src/ostree/checksum.js';
import { ObjectChecksumError, GVariantError } from '../src/errors.js';
import { ostreeCommit, ostreeInit, writeSampleTree } from '../scripts/lib/sample-tree.js';
import { cli, ostreeFsck, repoState, tmp } from './helpers/tmp.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const MODES: Array<{ mode: string; tree: Parameters<typeof writeSampleTree>[1]; extra?: string[] }> = [
  { mode: 'archive', tree: {} },
  { mode: 'bare', tree: {} },
  { mode: 'bare-user', tree: {} },
  // bare-user-only keeps neither xattrs nor setuid bits: commit canonical permissions.
  { mode: 'bare-user-only', tree: { noXattrs: true }, extra: ['--canonical-permissions'] },
];

for (const { mode, tree, extra } of MODES) {
  t.test(`every object of a generated commit round-trips (${mode})`, async (t) => {
    const d = tmp(t);
    const repoPath = join(d, 'repo');
    writeSampleTree(join(d, 'tree'), tree);
    ostreeInit(repoPath, mode);
    const commit = ostreeCommit(repoPath, join(d, 'tree'), { extraArgs: extra ?? [] });
    const repo = Repo.open(repoPath);
    t.teardown(() => repo.close());
    t.equal(repo.mode, mode);
    t.equal(repo.resolveRev('main'), commit);
    t.equal(repo.listRefs().get('main'), commit);

    const objects = repo.reachableObjects(commit);
    const counts: Record<number, number> = {};
    let fileMismatch = 0;
    let metaMismatch = 0;
    let headerMismatch = 0;
    for (const o of objects) {
      counts[o.type] = (counts[o.type] ?? 0) + 1;
      if (o.type === ObjectType.FILE) {
        // TypeScript content checksum (header + payload) == libostree's object name.
        const f = repo.readFile(o.checksum);
        const chunks: Buffer[] = [];
        if (f.stream) for await (const c of f.stream) chunks.push(c as Buffer);
        const payload = Buffer.concat(chunks);
        t.equal(payload.length, f.size);
        if (contentChecksum(f.header, payload) !== o.checksum) fileMismatch++;
        // The header-only read (direct in bare-user) answers what libostree's load_file does.
        const h = repo.readFileHeader(o.checksum);
        if (JSON.stringify(h) !== JSON.stringify({ header: f.header, size: f.size })) headerMismatch++;
        continue;
      }
      const bytes = repo.loadMetadataBytes(o.type, o.checksum);
      if (sha(bytes) !== o.checksum) metaMismatch++;
      const again =
        o.type === ObjectType.COMMIT
          ? serializeCommit(parseCommit(bytes))
          : o.type === ObjectType.DIR_TREE
            ? serializeDirTree(parseDirTree(bytes))
            : serializeDirMeta(parseDirMeta(bytes));
      if (!again.equals(bytes)) metaMismatch++;
    }
    t.equal(fileMismatch, 0, 'every content checksum computed in TypeScript equals libostree');
    t.equal(headerMismatch, 0, 'readFileHeader equals readFile (header and size) for every content object');
    t.equal(metaMismatch, 0, 'every metadata object re-serializes byte-identically and hashes to its name');
    t.equal(counts[ObjectType.COMMIT], 1);
    t.ok((counts[ObjectType.FILE] ?? 0) >= 15, `files traversed (${counts[ObjectType.FILE]})`);
    t.ok((counts[ObjectType.DIR_TREE] ?? 0) >= 10, 'dirtrees traversed');

    // The TypeScript walk sees the same tree as libostree's traversal.
    const walked = new Set<string>();
    for (const e of repo.walk(commit)) {
      if (e.kind === 'file') walked.add(e.checksum);
      else (walked.add(e.tree), walked.add(e.meta));
    }
    const expected = new Set(objects.filter((o) => o.type !== ObjectType.COMMIT).map((o) => o.checksum));
    t.same([...walked].sort(), [...expected].sort(), 'walk() reaches exactly the traversed objects');

    // Spot checks of what the tree holds.
    const paths = new Map<string, string>();
    for (const e of repo.walk(commit)) if (e.kind === 'file') paths.set(e.path, e.checksum);
    const su = repo.readFile(paths.get('/usr/bin/su-helper')!);
    t.equal(su.header.mode, mode === 'bare-user-only' ? 0o100755 : 0o104755, 'setuid mode');
    const link = repo.readFile(paths.get('/usr/bin/readme-abs')!);
    t.equal(link.header.symlinkTarget, '/usr/share/doc/README');
    t.equal(link.stream, null);
    t.equal(paths.get('/usr/bin/hello'), paths.get('/usr/bin/hello-hardlink'), 'hardlinks share one object');
    t.ok(paths.has('/usr/share/ünïcödé-名前.txt'), 'non-ASCII name');
    if (!tree?.noXattrs) {
      const x = repo.readFile(paths.get('/usr/share/xattr-file')!);
      t.same(
        x.header.xattrs.map((a) => a.name.toString()),
        ['user.alpha', 'user.zeta'],
        'user xattrs, sorted',
      );
      f_close(x.stream);
    }
  });
}

t.test('bare-user readFileHeader: whatever the direct read does not understand is answered by libostree', async (t) => {
  const d = tmp(t);
  const repoPath = join(d, 'repo');
  writeSampleTree(join(d, 'tree'), {});
  ostreeInit(repoPath, 'bare-user');
  const commit = ostreeCommit(repoPath, join(d, 'tree'));
  const repo = Repo.open(repoPath);
  t.teardown(() => repo.close());
  const paths = new Map<string, string>();
  for (const e of repo.walk(commit)) if (e.kind === 'file') paths.set(e.path, e.checksum);
  const objPath = (c: string) => join(repoPath, 'objects', c.slice(0, 2), `${c.slice(2)}.file`);
  const setMeta = (c: string, hex: string) => execFileSync('setfattr', ['-n', 'user.ostreemeta', '-v', `0x${hex}`, objPath(c)]);
  const viaLibostree = (c: string) => {
    const f = repo.readFile(c);
    f_close(f.stream);
    return { header: f.header, size: f.size };
  };

  // Metadata with xattrs, rewritten by hand: read directly, equal to libostree's reading.
  const hello = paths.get('/usr/bin/hello')!;
  // (uuua(ayay)): uid 7, gid 8, mode 0100750, [("user.k\0", "v")]: element = name, value, one
  // framing offset (end of name); the array's framing offset = end of the element (9).
  setMeta(hello, '00000007' + '00000008' + '000081e8' + Buffer.from('user.k\0v').toString('hex') + '07' + '09');
  t.same(repo.readFileHeader(hello), viaLibostree(hello), 'xattrs in user.ostreemeta: libostree\'s reading');
  t.match(repo.readFileHeader(hello).header, { uid: 7, gid: 8, mode: 0o100750 }, 'owner and mode from the xattr');
  t.same(repo.readFileHeader(hello).header.xattrs.map((x) => `${x.name}=${x.value}`), ['user.k=v']);

  // Metadata in a form our strict parser rejects (trailing bytes after the empty xattr array):
  // libostree hands it on leniently, and both reads refuse it the same way, naming the object.
  setMeta(hello, '00000000' + '00000000' + '000081ed' + 'ffff');
  const viaNative = (() => {
    try {
      viaLibostree(hello);
      return 'no error';
    } catch (e) {
      return (e as Error).message;
    }
  })();
  t.match(viaNative, new RegExp(hello), 'libostree path: an error naming the object');
  t.throws(() => repo.readFileHeader(hello), { message: viaNative }, 'non-normal user.ostreemeta: the same error');

  // A symlink whose stored target carries bytes after the NUL: the target ends at the NUL.
  const link = paths.get('/usr/bin/readme-abs')!;
  writeFileSync(objPath(link), Buffer.from('/usr/share/doc/README\0junk'));
  t.same(repo.readFileHeader(link), viaLibostree(link));
  t.equal(repo.readFileHeader(link).header.symlinkTarget, '/usr/share/doc/README');

  // No user.ostreemeta at all: libostree's error, naming the object.
  const x = paths.get('/usr/share/xattr-file')!;
  execFileSync('setfattr', ['-x', 'user.ostreemeta', objPath(x)]);
  t.throws(() => repo.readFileHeader(x), new RegExp(x), 'missing metadata: libostree\'s error naming the object');

  // A string that is not a checksum never becomes a path (libostree's load_file would read
  // objects/../../outside.file, a file outside the repository that looks like an object).
  writeFileSync(join(d, 'outside.file'), 'not an object');
  execFileSync('setfattr', ['-n', 'user.ostreemeta', '-v', '0x00000000000000000000' + '81a4', join(d, 'outside.file')]);
  t.throws(() => repo.readFileHeader('../../outside'), /"\.\.\/\.\.\/outside" is not a checksum/, 'readFileHeader refuses it');
  t.throws(() => repo.readFile('../../outside'), /is not a checksum/, 'readFile refuses it');
  // The same for every method that names an object: with an outside.commit planted, libostree's
  // has_object says yes and write_commit_detached_metadata would write ../../outside.commitmeta.
  writeFileSync(join(d, 'outside.commit'), 'not a commit');
  const bad = '../../outside';
  const calls: Array<[string, () => unknown]> = [
    ['hasObject', () => repo.hasObject(ObjectType.COMMIT, bad)],
    ['loadMetadataBytes', () => repo.loadMetadataBytes(ObjectType.COMMIT, bad)],
    ['openObjectStream', () => repo.openObjectStream(ObjectType.FILE, bad)],
    ['readCommitMetaBytes', () => repo.readCommitMetaBytes(bad)],
    ['writeCommitMeta', () => repo.writeCommitMeta(bad, serializeMetadata([]))],
    ['reachableObjects', () => repo.reachableObjects(bad)],
    ['fsckObject', () => repo.fsckObject(ObjectType.FILE, bad)],
    ['loosePayloadPath', () => repo.loosePayloadPath(bad)],
  ];
  for (const [name, call] of calls) t.throws(call, /"\.\.\/\.\.\/outside" is not a checksum/, `${name} refuses it`);
  t.notOk(existsSync(join(d, 'outside.commitmeta')), 'nothing written outside the repository');
});

async function caught(p: Promise<unknown>): Promise<Error | null> {
  return p.then(
    () => null,
    (e: Error) => e,
  );
}

function f_close(s: NodeJS.ReadableStream | null) {
  (s as unknown as { destroy?: () => void })?.destroy?.();
}

t.test('commitmeta written through the API reads back byte-identical and ostree sees it', async (t) => {
  const d = tmp(t);
  const repoPath = join(d, 'repo');
  mkdirSync(join(d, 'tree'));
  writeFileSync(join(d, 'tree', 'f'), 'x');
  ostreeInit(repoPath, 'bare-user');
  const commit = ostreeCommit(repoPath, join(d, 'tree'));
  const repo = Repo.open(repoPath);
  t.teardown(() => repo.close());
  t.equal(repo.readCommitMetaBytes(commit), null, 'no commitmeta yet');
  const meta = serializeMetadata([
    ['ostree.sign.ed25519', { type: 'aay', value: [Buffer.alloc(64, 0xab)] }],
    ['org.example.note', { type: 's', value: 'kept' }],
  ]);
  repo.writeCommitMeta(commit, meta);
  t.same(repo.readCommitMetaBytes(commit), meta, 'byte-identical');
  const reopened = Repo.open(repoPath);
  t.same(reopened.readCommitMetaBytes(commit), meta, 'byte-identical after reopening');
  reopened.close();
  const shown = execFileSync(
    'ostree',
    ['show', `--repo=${repoPath}`, '--print-detached-metadata-key=org.example.note', commit],
    { encoding: 'utf8' },
  );
  t.equal(shown.trim(), "'kept'");
  const sig = execFileSync(
    'ostree',
    ['show', `--repo=${repoPath}`, '--print-detached-metadata-key=ostree.sign.ed25519', commit],
    { encoding: 'utf8' },
  );
  t.match(sig, /\[b'\\xab\\xab|\[\[byte 0xab|0xab/, 'ostree prints the signature array');
  t.throws(() => repo.writeCommitMeta(commit, Buffer.from([1, 2, 3])), GVariantError, 'garbled commitmeta refused');
  t.same(repo.readCommitMetaBytes(commit), meta, 'unchanged after refusal');
});

t.test('a transaction that throws leaves no new ref and fsck stays clean', async (t) => {
  const d = tmp(t);
  const repoPath = join(d, 'repo');
  writeSampleTree(join(d, 'tree'), { bigFileMiB: 1 });
  ostreeInit(repoPath, 'bare-user');
  const commit = ostreeCommit(repoPath, join(d, 'tree'));
  const repo = Repo.open(repoPath);
  t.teardown(() => repo.close());
  // Stage a real new object and a ref, then throw.
  const header = { uid: 0, gid: 0, mode: 0o100644, rdev: 0, symlinkTarget: '', xattrs: [] };
  const payload = Buffer.from('brand new content\n');
  const csum = contentChecksum(header, payload);
  await t.rejects(
    repo.transaction(async (r) => {
      await r.writeContent(csum, { header, payload });
      r.setRef('should-not-exist', commit);
      throw new Error('boom');
    }),
    /boom/,
  );
  t.notOk(repo.listRefs().has('should-not-exist'), 'no new ref');
  t.notOk(repo.hasObject(ObjectType.FILE, csum), 'staged object discarded');
  t.doesNotThrow(() => ostreeFsck(repoPath));
  // The same work in a transaction that succeeds is kept.
  await repo.transaction(async (r) => {
    await r.writeContent(csum, { header, payload });
    r.setRef('kept', commit);
  });
  t.equal(repo.listRefs().get('kept'), commit);
  t.ok(repo.hasObject(ObjectType.FILE, csum));
  t.doesNotThrow(() => ostreeFsck(repoPath));
});

t.test('writes under a wrong expected checksum fail, name both, and write nothing', async (t) => {
  const d = tmp(t);
  const repoPath = join(d, 'repo');
  ostreeInit(repoPath, 'bare-user');
  const repo = Repo.open(repoPath);
  t.teardown(() => repo.close());
  const header = { uid: 0, gid: 0, mode: 0o100644, rdev: 0, symlinkTarget: '', xattrs: [] };
  const payload = Buffer.from('actual bytes\n');
  const actual = contentChecksum(header, payload);
  const wrong = contentChecksum(header, Buffer.from('other bytes\n'));
  const before = repoState(repoPath);
  await repo.transaction(async (r) => {
    const e = await caught(r.writeContent(wrong, { header, payload }));
    t.ok(e instanceof ObjectChecksumError && e.message.includes(wrong) && e.message.includes(actual), `content: ${e?.message}`);
  });
  // Streaming path (large payload through a pipe), wrong name as well.
  const big = Buffer.alloc(3 << 20, 7);
  const bigActual = contentChecksum(header, big);
  const { Readable } = await import('node:stream');
  await repo.transaction(async (r) => {
    const e = await caught(
      r.writeContent(wrong, { header, payload: { stream: Readable.from([big.subarray(0, 1 << 20), big.subarray(1 << 20)]), length: big.length } }),
    );
    t.ok(e instanceof ObjectChecksumError && e.message.includes(wrong) && e.message.includes(bigActual), `streamed: ${e?.message}`);
  });
  // Metadata.
  const dm = serializeDirMeta({ uid: 0, gid: 0, mode: 0o40700, xattrs: [] });
  const dmWrong = sha(Buffer.from('nope'));
  await repo.transaction(async (r) => {
    const e = await caught(Promise.resolve().then(() => r.writeMetadata(ObjectType.DIR_META, dmWrong, dm)));
    t.ok(e instanceof ObjectChecksumError && e.message.includes(dmWrong) && e.message.includes(sha(dm)), `metadata: ${e?.message}`);
  });
  for (const c of [actual, wrong, bigActual]) t.notOk(repo.hasObject(ObjectType.FILE, c), `no file object ${c.slice(0, 8)}`);
  for (const c of [dmWrong, sha(dm)]) t.notOk(repo.hasObject(ObjectType.DIR_META, c), `no dirmeta ${c.slice(0, 8)}`);
  t.equal(repoState(repoPath), before, 'repository unchanged');
  // And the right names work, including the streaming path.
  await repo.transaction(async (r) => {
    t.equal(await r.writeContent(actual, { header, payload }), actual);
    t.equal(
      await r.writeContent(bigActual, { header, payload: { stream: Readable.from([big]), length: big.length } }),
      bigActual,
    );
    t.equal(r.writeMetadata(ObjectType.DIR_META, sha(dm), dm), sha(dm));
  });
  t.ok(repo.hasObject(ObjectType.FILE, bigActual));
  t.doesNotThrow(() => ostreeFsck(repoPath));
});

t.test('bad input: clear errors, non-zero exit, nothing changed', async (t) => {
  const d = tmp(t);
  const repoPath = join(d, 'repo');
  mkdirSync(join(d, 'tree'));
  writeFileSync(join(d, 'tree', 'f'), 'x');
  ostreeInit(repoPath, 'archive');
  const commit = ostreeCommit(repoPath, join(d, 'tree'));
  const before = repoState(repoPath);

  let r = cli(['show', '--repo', join(d, 'missing'), 'main']);
  t.not(r.status, 0);
  t.match(r.stderr, /repository .*missing does not exist/);
  mkdirSync(join(d, 'empty'));
  r = cli(['show', '--repo', join(d, 'empty'), 'main']);
  t.not(r.status, 0);
  t.match(r.stderr, /is not an ostree repository/);
  r = cli(['show', '--repo', repoPath, 'no-such-ref']);
  t.not(r.status, 0);
  t.match(r.stderr, /cannot resolve "no-such-ref"/);

  // Garble the commit object on disk: the codec refuses it with the object named.
  const objPath = join(repoPath, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commit`);
  t.ok(existsSync(objPath));
  const { readFileSync, chmodSync } = await import('node:fs');
  const good = readFileSync(objPath);
  chmodSync(objPath, 0o644);
  writeFileSync(objPath, good.subarray(0, good.length - 5));
  r = cli(['show', '--repo', repoPath, commit]);
  t.not(r.status, 0);
  t.match(r.stderr, new RegExp(`commit ${commit}`));
  writeFileSync(objPath, good);
  chmodSync(objPath, 0o644);
  t.equal(repoState(repoPath), before, 'repository unchanged');
  r = cli(['show', '--repo', repoPath, 'main']);
  t.equal(r.status, 0);
  t.match(r.stdout, new RegExp(`commit +${commit}`));
});
