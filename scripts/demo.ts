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
  if (r.stdout) process.stdout.write(r.stdout.replace(/^/gm, '  '));
  if (r.stderr) process.stdout.write(r.stderr.replace(/^/gm, '  '));
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

  step('2. Inspect it: fields, metadata, detached metadata, object counts');
  ours('show', '--repo', repo, 'main');

  step('3. Re-checksum every object in TypeScript (trust nothing stored)');
  ours('fsck', '--repo', repo, 'main');

  process.stdout.write(`\nDemo finished: every step passed. Work directory: ${keep ? work : '(removed)'}\n`);
} catch (e) {
  process.stdout.write(`\nDemo FAILED: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  if (!keep) rmSync(work, { recursive: true, force: true });
}
