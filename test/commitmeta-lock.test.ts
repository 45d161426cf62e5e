/**
 * Concurrent writers of one commit's commitmeta: `sign` and the importers read, merge and write
 * it under the repository's commitmeta lock (Repo.lockCommitmeta), so a signature another process
 * adds meanwhile is kept. Deterministic: this process holds the lock, starts the command, checks it
 * waits, adds a signature of its own, then lets it go on; every signature must be there at the end.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Repo } from '../src/ostree/repo.js';
import { serializeMetadata } from '../src/gvariant/ostree-types.js';
import { appendSignature, signaturesOf } from '../src/sign/commit-signatures.js';
import { ED25519_METADATA_KEY, readSecretKeyFile, signData } from '../src/sign/ed25519.js';
import { ostreeCommit, ostreeInit, writeSampleTree } from '../scripts/lib/sample-tree.js';
import { CLI, cli, ensureBuilt, ostreeFsck, tmp } from './helpers/tmp.js';

ensureBuilt();

function run(...args: string[]): string {
  const r = cli(args);
  if (r.status !== 0) throw new Error(`ostree-oci ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Start the CLI; resolves with its exit code and stderr when it ends. */
function start(args: string[]): { done: Promise<{ code: number | null; stderr: string }>; running: () => boolean } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let ended = false;
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.on('close', (code) => {
      ended = true;
      resolve({ code, stderr });
    }),
  );
  return { done, running: () => !ended };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The ed25519 signatures stored for `commit` in `repoPath`, hex. */
function signatures(repoPath: string, commit: string): string[] {
  const r = Repo.open(repoPath);
  try {
    return (signaturesOf(r.readCommitMeta(commit), ED25519_METADATA_KEY) ?? []).map((s) => s.toString('hex'));
  } finally {
    r.close();
  }
}

t.test('sign and unencapsulate wait for the commitmeta lock, and keep what was added meanwhile', async (t) => {
  const d = tmp(t);
  const src = join(d, 'src');
  writeSampleTree(join(d, 'tree'));
  ostreeInit(src, 'bare-user');
  const commit = ostreeCommit(src, join(d, 'tree'), { branch: 'main' });
  for (const k of ['k1', 'k2', 'k3', 'k4', 'k5']) run('keygen', '--out', join(d, k));
  // Image A: signed by k1. Image B: by k1 and k2.
  run('sign', '--repo', src, 'main', '--keyfile', join(d, 'k1'));
  run('encapsulate', '--repo', src, 'main', `oci:${join(d, 'a')}`);
  run('sign', '--repo', src, 'main', '--keyfile', join(d, 'k2'));
  run('encapsulate', '--repo', src, 'main', `oci:${join(d, 'b')}`);
  const [s1, s2] = signatures(src, commit);

  const dst = join(d, 'dst');
  ostreeInit(dst, 'bare-user');
  run('unencapsulate', '--repo', dst, `oci:${join(d, 'a')}`);
  t.same(signatures(dst, commit), [s1]);

  /** With the lock held here: start `args`, check it waits, add a signature by `key`, release. */
  const whileLocked = async (args: string[], key: string): Promise<string> => {
    const repo = Repo.open(dst);
    let unlock: (() => void) | undefined;
    try {
      unlock = await repo.lockCommitmeta();
      const before = signatures(dst, commit);
      const p = start(args);
      await sleep(2000);
      t.ok(p.running(), `${args[0]} waits while another process holds the lock`);
      t.same(signatures(dst, commit), before, 'and has written nothing');
      // What a concurrent signer would do, with the lock held.
      const mine = signData(repo.loadCommit(commit).bytes, readSecretKeyFile(join(d, key)));
      repo.writeCommitMeta(commit, serializeMetadata(appendSignature(repo.readCommitMeta(commit) ?? [], ED25519_METADATA_KEY, mine)));
      unlock();
      unlock = undefined;
      const r = await p.done;
      t.equal(r.code, 0, `${args[0]} then succeeds: ${r.stderr}`);
      return mine.toString('hex');
    } finally {
      unlock?.();
      repo.close();
    }
  };

  const s3 = await whileLocked(['sign', '--repo', dst, commit, '--keyfile', join(d, 'k4')], 'k3');
  const afterSign = signatures(dst, commit);
  t.equal(afterSign.length, 3, 'k1, k3 (added meanwhile) and k4 (the signer)');
  t.ok(afterSign.includes(s1!) && afterSign.includes(s3), 'nothing lost');

  // The importer: image B brings k2, which the repository lacks; k3's signature written meanwhile stays.
  const s5 = await whileLocked(['unencapsulate', '--repo', dst, `oci:${join(d, 'b')}`], 'k5');
  const afterImport = signatures(dst, commit);
  t.equal(afterImport.length, 5, 'the three stored, the one added meanwhile, and k2 from the image');
  for (const s of [s1!, s2!, s3, s5]) t.ok(afterImport.includes(s));
  ostreeFsck(dst); // throws when not clean
});
