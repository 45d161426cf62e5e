/**
 * Signing: ed25519 in ostree's exact format (checked with openssl), GPG through libostree (checked
 * with gpg and `ostree show`), tampering rejected with a named reason, bad keys refused.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Repo, ObjectType } from '../src/ostree/repo.js';
import { parseCommit, serializeCommit, serializeMetadata, parseMetadata } from '../src/gvariant/ostree-types.js';
import { sha256Hex } from '../src/ostree/checksum.js';
import { mergeCommitmeta } from '../src/sign/commit-signatures.js';
import type { VarDict } from '../src/gvariant/codec.js';
import { ostreeCommit, ostreeInit } from '../scripts/lib/sample-tree.js';
import { cli, tmp } from './helpers/tmp.js';

function makeRepo(t: Parameters<typeof tmp>[0]) {
  const d = tmp(t);
  const repo = join(d, 'repo');
  mkdirSync(join(d, 'tree', 'usr'), { recursive: true });
  writeFileSync(join(d, 'tree', 'usr', 'file'), 'signed content\n');
  ostreeInit(repo, 'bare-user');
  const commit = ostreeCommit(repo, join(d, 'tree'));
  return { d, repo, commit };
}

function keygen(d: string, name: string): { secret: string; pub: string } {
  const r = cli(['keygen', '--out', join(d, name)]);
  if (r.status !== 0) throw new Error(r.stderr);
  return { secret: join(d, name), pub: join(d, `${name}.pub`) };
}

t.test('keygen writes ostree-format keys', async (t) => {
  const d = tmp(t);
  const k = keygen(d, 'key');
  const secret = Buffer.from(readFileSync(k.secret, 'utf8').trim(), 'base64');
  const pub = Buffer.from(readFileSync(k.pub, 'utf8').trim(), 'base64');
  t.equal(secret.length, 64, 'secret = seed ‖ public');
  t.equal(pub.length, 32);
  t.same(secret.subarray(32), pub, 'public half of the secret equals the public key');
  // openssl derives the same public key from the seed.
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), secret.subarray(0, 32)]);
  writeFileSync(join(d, 'seed.der'), der);
  const pubDer = execFileSync('openssl', ['pkey', '-inform', 'DER', '-in', join(d, 'seed.der'), '-pubout', '-outform', 'DER']);
  t.same(pubDer.subarray(pubDer.length - 32), pub, 'openssl agrees on the public key');
  t.equal(statSync(k.secret).mode & 0o077, 0, 'secret key is private to its owner');
  const again = cli(['keygen', '--out', k.secret]);
  t.equal(again.status, 2, 'refuses to overwrite');
  t.match(again.stderr, /exists; use --force/);
  // --force over a directory: refused before anything is written (it used to leave the new
  // public key and the secret key's temporary behind).
  for (const [name, dir] of [['d1', 'd1'], ['d2', 'd2.pub']] as const) {
    mkdirSync(join(d, dir));
    const listing = readdirSync(d).sort();
    const r = cli(['keygen', '--out', join(d, name), '--force']);
    t.equal(r.status, 2, `--force with ${dir} a directory: refused`);
    t.match(r.stderr, new RegExp(`${dir} exists and is not a regular file`), 'names it');
    t.same(readdirSync(d).sort(), listing, 'nothing written');
  }
});

t.test('ed25519 signature verifies with openssl over the exact .commit bytes; other keys kept', async (t) => {
  const { d, repo, commit } = makeRepo(t);
  const k = keygen(d, 'key');
  // Pre-existing commitmeta keys must survive signing byte for byte.
  const r0 = Repo.open(repo);
  r0.writeCommitMeta(commit, serializeMetadata([
    ['org.example.first', { type: 's', value: 'stays' }],
    ['ostree.sign.ed25519', { type: 'aay', value: [Buffer.alloc(64, 9)] }],
  ]));
  r0.close();
  let r = cli(['sign', '--repo', repo, 'main', '--keyfile', k.secret, '--json']);
  t.equal(r.status, 0, r.stderr);
  const { signature } = JSON.parse(r.stdout) as { signature: string };
  const repoH = Repo.open(repo);
  t.teardown(() => repoH.close());
  const meta = repoH.readCommitMeta(commit)!;
  t.same(meta.map(([k]) => k), ['org.example.first', 'ostree.sign.ed25519'], 'keys kept, in order');
  t.same(meta[0]![1], { type: 's', value: 'stays' });
  const sigs = meta[1]![1].value as Buffer[];
  t.equal(sigs.length, 2, 'appended, not replaced');
  t.same(sigs[0], Buffer.alloc(64, 9));
  t.equal(sigs[1]!.toString('hex'), signature);

  // Independent check: openssl pkeyutl over the raw commit object file.
  const commitFile = join(repo, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commit`);
  const pub = Buffer.from(readFileSync(k.pub, 'utf8').trim(), 'base64');
  writeFileSync(join(d, 'pub.der'), Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pub]));
  execFileSync('openssl', ['pkey', '-pubin', '-inform', 'DER', '-in', join(d, 'pub.der'), '-out', join(d, 'pub.pem')]);
  writeFileSync(join(d, 'sig.bin'), sigs[1]!);
  const ok = spawnSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', join(d, 'pub.pem'), '-rawin', '-in', commitFile, '-sigfile', join(d, 'sig.bin')], { encoding: 'utf8' });
  t.equal(ok.status, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, /Signature Verified Successfully/);
  const flipped = Buffer.from(sigs[1]!);
  flipped[10] ^= 1;
  writeFileSync(join(d, 'bad.bin'), flipped);
  const bad = spawnSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', join(d, 'pub.pem'), '-rawin', '-in', commitFile, '-sigfile', join(d, 'bad.bin')], { encoding: 'utf8' });
  t.not(bad.status, 0, 'openssl rejects a flipped signature');

  r = cli(['verify', '--repo', repo, 'main', '--pubkeys', k.pub, '--json']);
  t.equal(r.status, 0, r.stdout + r.stderr);
  const rep = JSON.parse(r.stdout);
  t.equal(rep.ok, true);
  t.match(rep.checks.find((c: { name: string }) => c.name === 'ed25519-signature').detail, /verified successfully with key/);
});

t.test('tampering is rejected with a named reason', async (t) => {
  const { d, repo, commit } = makeRepo(t);
  const trusted = keygen(d, 'trusted');
  const unknown = keygen(d, 'unknown');
  t.equal(cli(['sign', '--repo', repo, commit, '--keyfile', trusted.secret]).status, 0);
  const verify = (rev: string) => cli(['verify', '--repo', repo, rev, '--pubkeys', trusted.pub]);
  t.equal(verify(commit).status, 0, 'baseline verifies');

  // 1. A signature by a key not in the file.
  const { repo: repo2, commit: c2 } = makeRepo(t);
  t.equal(cli(['sign', '--repo', repo2, c2, '--keyfile', unknown.secret]).status, 0);
  let r = cli(['verify', '--repo', repo2, c2, '--pubkeys', trusted.pub]);
  t.equal(r.status, 1);
  t.match(r.stdout, /ed25519-signature\s+FAILED\s+ed25519: Signature couldn't be verified with: key '[0-9a-f]{64}'/);

  // 2. One byte of the signature changed.
  const h = Repo.open(repo);
  t.teardown(() => h.close());
  const goodMeta = h.readCommitMetaBytes(commit)!;
  const meta = parseMetadata(goodMeta);
  const sig = Buffer.from((meta[0]![1].value as Buffer[])[0]!);
  sig[0] ^= 0xff;
  h.writeCommitMeta(commit, serializeMetadata([['ostree.sign.ed25519', { type: 'aay', value: [sig] }]]));
  r = verify(commit);
  t.equal(r.status, 1);
  t.match(r.stdout, /ed25519-signature\s+FAILED/);
  h.writeCommitMeta(commit, goodMeta);
  t.equal(verify(commit).status, 0, 'restored');

  // 3. One byte of the commit changed, re-signed by an unknown key: a new commit object.
  const c = parseCommit(h.loadCommit(commit).bytes);
  const tamperedBytes = serializeCommit({ ...c, subject: `${c.subject}X` });
  const tampered = sha256Hex(tamperedBytes);
  await h.transaction(async (r) => {
    r.writeMetadata(ObjectType.COMMIT, tampered, tamperedBytes);
    r.setRef('tampered', tampered);
  });
  t.equal(cli(['sign', '--repo', repo, 'tampered', '--keyfile', unknown.secret]).status, 0);
  r = verify('tampered');
  t.equal(r.status, 1);
  t.match(r.stdout, /ed25519-signature\s+FAILED/);
  // …and the original signature copied onto the tampered commit does not verify either.
  h.writeCommitMeta(tampered, goodMeta);
  r = verify('tampered');
  t.equal(r.status, 1, 'a signature over other bytes does not verify');

  // 4. Commitmeta removed.
  const metaFile = join(repo, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commitmeta`);
  unlinkSync(metaFile);
  r = verify(commit);
  t.equal(r.status, 1);
  t.match(r.stdout, new RegExp(`commitmeta\\s+absent\\s+No commitmeta for commit ${commit}`));
  t.match(r.stdout, /ed25519-signature\s+MISSING/);
});

t.test('bad keys: clear errors', async (t) => {
  const { d, repo } = makeRepo(t);
  const cases: Array<[string, string, RegExp]> = [
    ['malformed.pub', 'not base64!!\n', /malformed\.pub:1: malformed base64/],
    ['short.pub', `${Buffer.alloc(31).toString('base64')}\n`, /short\.pub:1: ed25519 public key must be 32 bytes, found 31/],
    ['empty.pub', '\n', /empty\.pub: public key file specified, but no public keys found/],
  ];
  for (const [name, text, re] of cases) {
    writeFileSync(join(d, name), text);
    const r = cli(['verify', '--repo', repo, 'main', '--pubkeys', join(d, name)]);
    t.not(r.status, 0, name);
    t.match(r.stderr, re, name);
  }
  const secrets: Array<[string, string, RegExp]> = [
    ['malformed.key', '***\n', /malformed base64/],
    ['short.key', `${Buffer.alloc(32).toString('base64')}\n`, /must be 64 bytes \(seed ‖ public\), found 32/],
    ['empty.key', '', /empty key file/],
    ['mismatch.key', `${Buffer.alloc(64, 5).toString('base64')}\n`, /public half does not belong to the seed/],
  ];
  for (const [name, text, re] of secrets) {
    writeFileSync(join(d, name), text);
    const before = readFileSync(join(repo, 'refs', 'heads', 'main'), 'utf8');
    const r = cli(['sign', '--repo', repo, 'main', '--keyfile', join(d, name)]);
    t.not(r.status, 0, name);
    t.match(r.stderr, re, name);
    t.equal(readFileSync(join(repo, 'refs', 'heads', 'main'), 'utf8'), before);
  }
  const missing = cli(['sign', '--repo', repo, 'main', '--keyfile', join(d, 'nope.key')]);
  t.match(missing.stderr, /cannot read key file .*nope\.key: ENOENT/);
});

t.test('GPG signatures through libostree verify with gpg and show in ostree show', async (t) => {
  const { d, repo, commit } = makeRepo(t);
  const home = join(d, 'gnupg');
  mkdirSync(home);
  chmodSync(home, 0o700);
  execFileSync('gpg', ['--homedir', home, '--batch', '--passphrase', '', '--quick-gen-key', 'ostree-oci test <test@example.com>', 'ed25519', 'sign', '0'], { stdio: 'ignore' });
  const fpr = execFileSync('gpg', ['--homedir', home, '--list-keys', '--with-colons'], { encoding: 'utf8' })
    .split('\n').find((l) => l.startsWith('fpr'))!.split(':')[9]!;
  let r = cli(['sign', '--repo', repo, 'main', '--gpg-key', fpr, '--gpg-homedir', home]);
  t.equal(r.status, 0, r.stderr);
  const h = Repo.open(repo);
  const sigs = h.readCommitMeta(commit)!.find(([k]) => k === 'ostree.gpgsigs')![1].value as Buffer[];
  h.close();
  t.equal(sigs.length, 1);
  writeFileSync(join(d, 'sig.gpg'), sigs[0]!);
  const commitFile = join(repo, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commit`);
  const v = spawnSync('gpg', ['--homedir', home, '--verify', join(d, 'sig.gpg'), commitFile], { encoding: 'utf8' });
  t.equal(v.status, 0, v.stderr);
  t.match(v.stderr, /Good signature/);
  const shown = execFileSync('ostree', ['show', `--repo=${repo}`, `--gpg-homedir=${home}`, commit], { encoding: 'utf8' });
  t.match(shown, /Found 1 signature/);
  r = cli(['verify', '--repo', repo, commit, '--gpg-homedir', home]);
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /gpg-signature\s+ok\s+1 of 1 valid/);
  // A different keyring does not verify it.
  const other = join(d, 'other');
  mkdirSync(other);
  chmodSync(other, 0o700);
  execFileSync('gpg', ['--homedir', other, '--batch', '--passphrase', '', '--quick-gen-key', 'other <o@example.com>', 'ed25519', 'sign', '0'], { stdio: 'ignore' });
  r = cli(['verify', '--repo', repo, commit, '--gpg-homedir', other]);
  t.equal(r.status, 1, r.stdout);
  t.match(r.stdout, /gpg-signature\s+FAILED\s+0 of 1 valid/);
  rmSync(other, { recursive: true, force: true });
});

t.test('mergeCommitmeta: adds keys and signature entries, keeps every stored value', async (t) => {
  const s1 = Buffer.from('sig-1');
  const s2 = Buffer.from('sig-2');
  const stored: VarDict = [
    ['version', { type: 's', value: 'stored' }],
    ['ostree.sign.ed25519', { type: 'aay', value: [s1] }],
  ];
  const incoming: VarDict = [
    ['ostree.sign.ed25519', { type: 'aay', value: [s2, s1] }],
    ['version', { type: 's', value: 'image' }],
    ['extra', { type: 'u', value: 7 }],
  ];
  const m = mergeCommitmeta(stored, incoming);
  t.same(m.added, ['ostree.sign.ed25519', 'extra']);
  t.same(m.kept, ['version']);
  t.same(
    serializeMetadata(m.merged),
    serializeMetadata([
      ['version', { type: 's', value: 'stored' }],
      ['ostree.sign.ed25519', { type: 'aay', value: [s1, s2] }],
      ['extra', { type: 'u', value: 7 }],
    ]),
    'stored order and values first, new entries after',
  );
  const same = mergeCommitmeta(stored, [['ostree.sign.ed25519', { type: 'aay', value: [s1] }]]);
  t.same([same.added, same.kept], [[], []], 'nothing new: nothing added or kept');
  t.same(mergeCommitmeta(stored, []).merged, stored, 'an empty commitmeta removes nothing');
});
