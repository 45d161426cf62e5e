/**
 * `npm run demo`: the main job, end to end, on a built-in sample tree. Every step runs the real
 * `ostree-oci` CLI (or the `ostree` CLI where a real tool makes the input) and prints the command
 * and its output, so the demo doubles as a tutorial.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from './bench/lib.js';
import { ostreeCommit, ostreeInit, writeSampleTree } from './lib/sample-tree.js';

const work = mkdtempSync(join(tmpdir(), 'ostree-oci-demo-'));
const keep = process.env['KEEP_DEMO'] === '1';

function step(title: string): void {
  process.stdout.write(`\n== ${title}\n`);
}

function run(cmd: string, args: string[], opts: { allowFail?: boolean } = {}): string {
  const shown = [cmd === process.execPath ? 'ostree-oci' : cmd, ...(cmd === process.execPath ? args.slice(1) : args)];
  process.stdout.write(`$ ${shown.map((a) => (/[\s'"]/.test(a) ? JSON.stringify(a) : a)).join(' ')}\n`);
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const indent = (text: string) => `${text.replace(/\n$/, '').replace(/^/gm, '  ')}\n`;
  if (r.stdout) process.stdout.write(indent(r.stdout));
  if (r.stderr) process.stdout.write(indent(r.stderr));
  if (r.status !== 0 && !opts.allowFail) throw new Error(`step failed (exit ${r.status}): ${shown.join(' ')}`);
  return r.stdout;
}

const ours = (...args: string[]) => run(process.execPath, [CLI, ...args]);

try {
  const tree = join(work, 'sample-tree');
  const repo = join(work, 'repo');

  step('1. A sample tree (files, symlinks, hardlinks, setuid, xattrs, odd names) committed with ostree');
  writeSampleTree(tree, { bigFileMiB: 2, containerLayout: true });
  ostreeInit(repo, 'bare-user');
  const commit = ostreeCommit(repo, tree, { subject: 'ostree-oci demo' });
  process.stdout.write(`  commit ${commit}\n`);

  step('2. Add composefs metadata: a new commit whose metadata carries ostree.composefs.digest.v0');
  const sealed = ours('commit-composefs', '--repo', repo, 'main', '-b', 'main').trim();

  step('3. Generate an ed25519 key pair (ostree format) and sign the commit');
  ours('keygen', '--out', join(work, 'demo.key'));
  ours('sign', '--repo', repo, 'main', '--keyfile', join(work, 'demo.key'));

  step('4. Inspect it: fields, metadata, detached metadata (the signature), object counts');
  ours('show', '--repo', repo, 'main');

  step('5. Encapsulate into an OCI archive (ostree-ext format, zstd, 4 content layers), commitmeta included');
  const archive = `oci-archive:${join(work, 'demo.ociarchive')}:latest`;
  ours('encapsulate', '--repo', repo, 'main', archive, '--compression', 'zstd', '--max-layers', '4', '-l', 'org.example.demo=yes');
  run('skopeo', ['inspect', archive]);

  step('6. Unencapsulate into a fresh repository: every object re-checksummed, commitmeta kept');
  const fresh = join(work, 'fresh-repo');
  ostreeInit(fresh, 'bare-user');
  ours('unencapsulate', '--repo', fresh, archive, '--ref', 'imported', '--verify-commit', sealed, '--require-commitmeta');

  step('7. Verify in the fresh repository as ostree-prepare-root would at boot (offline)');
  ours('verify', '--repo', fresh, 'imported', '--pubkeys', join(work, 'demo.key.pub'), '--composefs');
  run('ostree', ['fsck', `--repo=${fresh}`]);

  step('8. The same proof in one command');
  ours('roundtrip', '--repo', repo, 'main', '--pubkeys', join(work, 'demo.key.pub'));

  process.stdout.write(`\nDemo finished: every step passed. Work directory: ${keep ? work : '(removed)'}\n`);
} catch (e) {
  process.stdout.write(`\nDemo FAILED: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  if (!keep) rmSync(work, { recursive: true, force: true });
}
