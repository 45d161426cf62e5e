/**
 * Signed composefs end to end: prepare-root's offline check (verify --composefs) with each
 * failure named, and the roundtrip through oci-archive and a real docker-registry on 127.0.0.1.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Repo, ObjectType } from '../src/ostree/repo.js';
import { parseCommit, serializeCommit, setMetadata } from '../src/gvariant/ostree-types.js';
import { sha256Hex } from '../src/ostree/checksum.js';
import { ostreeCommit, ostreeInit, writeSampleTree } from '../scripts/lib/sample-tree.js';
import { startRegistry } from './oci-helpers.js';
import { rewriteLayer } from './container-helpers.js';
import { cli, ostreeFsck, repoState, tmp } from './helpers/tmp.js';

/** A repo whose `main` is a signed commit carrying ostree.composefs.digest.v0. */
function signedRepo(t: Parameters<typeof tmp>[0]) {
  const d = tmp(t);
  const repo = join(d, 'repo');
  writeSampleTree(join(d, 'tree'), { bigFileMiB: 1, containerLayout: true });
  ostreeInit(repo, 'bare-user');
  ostreeCommit(repo, join(d, 'tree'), { branch: 'plain' });
  const run = (...args: string[]) => {
    const r = cli(args);
    if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const commit = run('commit-composefs', '--repo', repo, 'plain', '-b', 'main');
  run('keygen', '--out', join(d, 'trusted'));
  run('keygen', '--out', join(d, 'unknown'));
  run('sign', '--repo', repo, 'main', '--keyfile', join(d, 'trusted'));
  return { d, repo, commit, run, pub: join(d, 'trusted.pub'), unknown: join(d, 'unknown') };
}

const prepareRoot = (repo: string, rev: string, pub: string) => cli(['verify', '--repo', repo, rev, '--pubkeys', pub, '--composefs']);

t.test('verify --composefs: passes, then each tampering fails with its named reason', async (t) => {
  const { d, repo, commit, run, pub, unknown } = signedRepo(t);
  let r = prepareRoot(repo, 'main', pub);
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /commitmeta\s+ok[\s\S]*ed25519-signature\s+ok[\s\S]*composefs-digest\s+ok/);

  const h = Repo.open(repo);
  t.teardown(() => h.close());
  const loaded = h.loadCommit(commit);
  const goodMeta = h.readCommitMetaBytes(commit)!;

  // Composefs digest changed in the commit metadata (and re-signed by the trusted key, so only the
  // digest check can catch it).
  const c = parseCommit(loaded.bytes);
  const wrongDigest = Buffer.alloc(32, 0x5a);
  const bytes = serializeCommit({ ...c, metadata: setMetadata(c.metadata, 'ostree.composefs.digest.v0', { type: 'ay', value: wrongDigest }) });
  const forged = sha256Hex(bytes);
  await h.transaction(async (tx) => {
    tx.writeMetadata(ObjectType.COMMIT, forged, bytes);
    tx.setRef('forged-digest', forged);
  });
  run('sign', '--repo', repo, 'forged-digest', '--keyfile', join(d, 'trusted'));
  r = prepareRoot(repo, 'forged-digest', pub);
  t.equal(r.status, 1);
  t.match(r.stdout, /ed25519-signature\s+ok/);
  t.match(r.stdout, /composefs-digest\s+FAILED\s+Wrong fsverity digest in composefs image/);
  t.match(r.stdout, new RegExp(`expected ${wrongDigest.toString('hex')}`));

  // No digest in the commit at all (signed): prepare-root refuses.
  r = prepareRoot(repo, 'plain', pub);
  t.equal(r.status, 1);
  t.match(r.stdout, /No commitmeta for commit/, 'plain has no commitmeta either');
  run('sign', '--repo', repo, 'plain', '--keyfile', join(d, 'trusted'));
  r = prepareRoot(repo, 'plain', pub);
  t.equal(r.status, 1);
  t.match(r.stdout, /composefs-digest\s+FAILED\s+Signature validation requested, but no valid digest in commit/);

  // Signed by a key not in the file.
  const meta = h.readCommitMeta(commit)!;
  h.writeCommitMeta(commit, Buffer.alloc(0)); // empty a{sv}: present but without signatures
  r = prepareRoot(repo, 'main', pub);
  t.equal(r.status, 1);
  t.match(r.stdout, /ed25519-signature\s+FAILED\s+Signature validation requested, but no signatures in commit/);
  run('sign', '--repo', repo, 'main', '--keyfile', unknown);
  r = prepareRoot(repo, 'main', pub);
  t.equal(r.status, 1);
  t.match(r.stdout, /ed25519-signature\s+FAILED\s+No valid \(of 1\) signatures found/);
  t.ok(meta.length > 0);

  // One byte of the signature.
  const flipped = Buffer.from(goodMeta);
  flipped[flipped.indexOf(Buffer.from('aay')) - 10] ^= 1; // a byte inside the 64-byte signature
  h.writeCommitMeta(commit, flipped);
  r = prepareRoot(repo, 'main', pub);
  t.equal(r.status, 1);
  t.match(r.stdout, /ed25519-signature\s+FAILED/);

  // Commitmeta removed.
  h.writeCommitMeta(commit, goodMeta);
  t.equal(prepareRoot(repo, 'main', pub).status, 0, 'restored');
  unlinkSync(join(repo, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commitmeta`));
  r = prepareRoot(repo, 'main', pub);
  t.equal(r.status, 1);
  t.match(r.stdout, new RegExp(`commitmeta\\s+FAILED\\s+No commitmeta for commit ${commit}`));
  h.writeCommitMeta(commit, goodMeta);

  // Content of one file changed.
  let victim = '';
  for (const e of h.walk(commit)) if (e.kind === 'file' && e.path === '/usr/lib/big.bin') victim = e.checksum;
  const obj = join(repo, 'objects', victim.slice(0, 2), `${victim.slice(2)}.file`);
  chmodSync(obj, 0o644);
  const content = readFileSync(obj);
  content[12345] ^= 0x80;
  writeFileSync(obj, content);
  r = prepareRoot(repo, 'main', pub);
  t.equal(r.status, 1);
  t.match(r.stdout, /ed25519-signature\s+ok/);
  t.match(r.stdout, /composefs-digest\s+FAILED\s+Wrong fsverity digest/);
});

t.test('roundtrip through oci-archive keeps signatures and composefs digest', async (t) => {
  const { repo, pub, commit } = signedRepo(t);
  const r = cli(['roundtrip', '--repo', repo, 'main', '--pubkeys', pub, '--json']);
  t.equal(r.status, 0, r.stdout + r.stderr);
  const res = JSON.parse(r.stdout);
  t.equal(res.commit, commit);
  t.same(
    res.steps.map((s: { name: string; status: string }) => [s.name, s.status]),
    [
      ['source', 'pass'],
      ['encapsulate', 'pass'],
      ['unencapsulate', 'pass'],
      ['commit-identical', 'pass'],
      ['commitmeta-identical', 'pass'],
      ['verify', 'pass'],
    ],
  );
  // An untrusted key makes the roundtrip fail at the verify step, named.
  const d = tmp(t);
  cli(['keygen', '--out', join(d, 'other')]);
  const bad = cli(['roundtrip', '--repo', repo, 'main', '--pubkeys', join(d, 'other.pub')]);
  t.equal(bad.status, 1);
  t.match(bad.stdout, /verify\s+FAILED\s+.*ed25519-signature/);
  // Nothing to verify the signatures with, or a GnuPG home that does not exist: usage errors, not
  // a roundtrip that ends "verify absent" or checks nothing.
  const noKeys = cli(['roundtrip', '--repo', repo, 'main']);
  t.equal(noKeys.status, 2);
  t.match(noKeys.stderr, /needs --pubkeys FILE or --gpg-homedir DIR/);
  for (const args of [['roundtrip', '--repo', repo, 'main'], ['verify', '--repo', repo, 'main'], ['sign', '--repo', repo, 'main', '--gpg-key', 'x']]) {
    const r = cli([...args, '--gpg-homedir', join(d, 'no-such-gnupg')]);
    t.equal(r.status, 2, `${args[0]} --gpg-homedir MISSING: usage error`);
    t.match(r.stderr, /--gpg-homedir .*no-such-gnupg: no such directory/, `${args[0]}: names it`);
  }
});

t.test('encapsulate → docker-registry on 127.0.0.1 → unencapsulate: verify --composefs passes', async (t) => {
  const registry = await startRegistry(t);
  const { d, repo, pub, commit } = signedRepo(t);
  const image = `docker://${registry}/ostree-oci/signed:v1`;
  let r = cli(['encapsulate', '--repo', repo, 'main', image, '--no-tls-verify', '--compression', 'zstd', '--max-layers', '3']);
  t.equal(r.status, 0, r.stderr);
  const fresh = join(d, 'fresh');
  execFileSync('ostree', ['init', `--repo=${fresh}`, '--mode=bare-user']);
  r = cli(['unencapsulate', '--repo', fresh, image, '--no-tls-verify', '--ref', 'pulled', '--require-commitmeta', '--json']);
  t.equal(r.status, 0, r.stderr);
  t.equal(JSON.parse(r.stdout).commit, commit);
  r = prepareRoot(fresh, 'pulled', pub);
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.doesNotThrow(() => ostreeFsck(fresh));
  // The one-command form through the registry as well.
  r = cli(['roundtrip', '--repo', repo, 'main', '--pubkeys', pub, '--via', `docker://${registry}/ostree-oci/roundtrip:v1`, '--no-tls-verify']);
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /signed content survived/);
});

t.test('importing a commit the repository already has: its commitmeta may grow, never shrink', async (t) => {
  const { d, repo, run, pub } = signedRepo(t);
  const img = join(d, 'img');
  run('encapsulate', '--repo', repo, 'main', `oci:${img}`);
  const dst = join(d, 'dst');
  ostreeInit(dst, 'bare-user');
  run('unencapsulate', '--repo', dst, `oci:${img}`, '--ref', 'imported');
  const verified = (key: string): boolean => cli(['verify', '--repo', dst, 'imported', '--pubkeys', key]).status === 0;
  t.ok(verified(pub), 'the imported commit verifies');
  const checksum = execFileSync('ostree', ['rev-parse', `--repo=${dst}`, 'imported'], { encoding: 'utf8' }).trim();
  const meta = (): Buffer => {
    const r = Repo.open(dst);
    try {
      return r.readCommitMetaBytes(checksum)!;
    } finally {
      r.close();
    }
  };
  const stored = meta();

  // The same image with an empty .commitmeta (anyone can publish one: the commit bytes are public).
  const empty = join(d, 'empty');
  execFileSync('cp', ['-a', img, empty]);
  await rewriteLayer(empty, 0, (es) => es.map((e) => (e.name.endsWith('.commitmeta') ? { ...e, data: Buffer.alloc(0) } : e)));
  const before = repoState(dst);
  const req = cli(['unencapsulate', '--repo', dst, `oci:${empty}`, '--require-commitmeta']);
  t.not(req.status, 0, '--require-commitmeta refuses an empty .commitmeta');
  t.match(req.stderr, /has an empty \.commitmeta in the image/);
  t.equal(repoState(dst), before, 'refused: repository unchanged');
  const plain = cli(['unencapsulate', '--repo', dst, `oci:${empty}`]);
  t.equal(plain.status, 0, plain.stderr);
  t.match(plain.stderr, /note: commitmeta of [0-9a-f]{64}: the stored detached metadata already has everything/);
  t.ok(meta().equals(stored), 'the stored commitmeta is unchanged');
  t.ok(verified(pub), 'and the commit still verifies');

  // A signature added locally survives re-importing the image that lacks it.
  run('keygen', '--out', join(d, 'local'));
  run('sign', '--repo', dst, 'imported', '--keyfile', join(d, 'local'));
  run('unencapsulate', '--repo', dst, `oci:${img}`);
  t.ok(verified(join(d, 'local.pub')), 'the local signature is kept');
  t.ok(verified(pub), 'the image signature is there');

  // A signature added upstream is merged in, next to the local one.
  run('keygen', '--out', join(d, 'upstream'));
  run('sign', '--repo', repo, 'main', '--keyfile', join(d, 'upstream'));
  const img2 = join(d, 'img2');
  run('encapsulate', '--repo', repo, 'main', `oci:${img2}`);
  const merged = cli(['unencapsulate', '--repo', dst, `oci:${img2}`, '--json']);
  t.equal(merged.status, 0, merged.stderr);
  t.same(JSON.parse(merged.stdout).commitmetaMerge, { added: ['ostree.sign.ed25519'], kept: [] }, 'JSON reports what was added');
  for (const k of [pub, join(d, 'local.pub'), join(d, 'upstream.pub')]) t.ok(verified(k), `signature of ${k.split('/').pop()} present`);
  t.doesNotThrow(() => ostreeFsck(dst));
});
