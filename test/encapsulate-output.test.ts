/**
 * Where `encapsulate` (and `composefs mkimage`) writes, after it failed or was stopped.
 *
 * A failure (here: a source repository missing an object) exits non-zero with an error naming
 * the destination the user gave (never the temporary layout behind an archive or a push), and
 * leaves the destination as it was: no new directory, no blobs in an existing layout, nothing
 * next to an archive.
 *
 * Ctrl-C and kill: the CLI, stopped by SIGINT / SIGTERM / SIGHUP in the middle of a run, exits
 * with 128 + the signal number and leaves no temporaries (`.ostree-oci-tmp-*` in an `oci:`
 * layout, `.FILE.layout-*` next to an archive, `ostree-oci-push-*` / `ostree-oci-pull-*` in the
 * temp dir, no skopeo still running on them), and the destination is as it was before.
 *
 * Each run is a real child process, signalled as soon as the temporary it must not leave behind
 * appears (polled); the inputs are big enough (a 48 MiB incompressible file) that the run is
 * still going then. A run that finished before the signal fails the exit-status check.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ostreeInit } from '../scripts/lib/sample-tree.js';
import { countObjects, makeSampleRepo, stagedFiles, type SampleRepo } from './container-helpers.js';
import { run as runTool, startRegistry } from './oci-helpers.js';
import { CLI, cli, ensureBuilt, fixture, ostreeFsck, tmp } from './helpers/tmp.js';

ensureBuilt();

const root = tmp(t, 'ostree-oci-output-');
const base = join(root, 'base');
const broken = join(root, 'broken-repo');
let s!: SampleRepo;
fixture(t, 'sample repo with a 48 MiB file, a copy missing that file, and a layout holding one image', () => {
  s = makeSampleRepo(root, { bigFileMiB: 48 });
  const r = cli(['encapsulate', '--repo', s.repo, 'main', `oci:${base}:first`, '--compression-fast']);
  if (r.status !== 0) throw new Error(`encapsulate: exit ${r.status}: ${r.stderr}`);
  cpSync(s.repo, broken, { recursive: true });
  const objects = join(broken, 'objects');
  const big = readdirSync(objects).flatMap((d) => readdirSync(join(objects, d)).map((f) => join(objects, d, f))).filter((f) => f.endsWith('.file') && statSync(f).size > 40 << 20);
  if (big.length !== 1) throw new Error(`expected one big content object, found ${big.length}`);
  rmSync(big[0]!);
});

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string): void => {
    for (const n of readdirSync(p, { withFileTypes: true })) {
      const full = join(p, n.name);
      if (n.isDirectory()) {
        out[`${relative(dir, full)}/`] = 'dir';
        walk(full);
      } else out[relative(dir, full)] = createHash('sha256').update(readFileSync(full)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Whether the temporary had appeared (the signal was sent). */
  signalled: boolean;
  /** Still running 30 s after the signal (then killed with SIGKILL). */
  hung: boolean;
}

/**
 * Run the CLI; once `appeared(pid)` is true, send `sig`. Polls every 5 ms; gives up (and kills the
 * child) after 120 s, or 30 s after the signal if the child is still running then (`hung`).
 */
function interrupt(args: string[], appeared: (pid: number) => boolean, sig: NodeJS.Signals, env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let signalled = false;
    let hung = false;
    let watchdog: NodeJS.Timeout | undefined;
    p.stderr.on('data', (d) => (stderr += d));
    const started = Date.now();
    const poll = setInterval(() => {
      if (p.exitCode !== null || p.signalCode !== null) return;
      if (appeared(p.pid!)) {
        clearInterval(poll);
        signalled = true;
        p.kill(sig);
        watchdog = setTimeout(() => {
          hung = true;
          p.kill('SIGKILL');
        }, 30_000);
      } else if (Date.now() - started > 120_000) {
        clearInterval(poll);
        p.kill('SIGKILL');
      }
    }, 5);
    p.on('close', (code, signal) => {
      clearInterval(poll);
      clearTimeout(watchdog);
      resolve({ code, signal, stderr, signalled, hung });
    });
  });
}

/** Whether a thread of process `pid` waits in poll(2): libostree reading a content object's pipe. */
function threadInPoll(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).some((tid) => {
      try {
        return /poll_schedule_timeout|do_sys_poll/.test(readFileSync(`/proc/${pid}/task/${tid}/wchan`, 'utf8'));
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

const has = (dir: string, prefix: string): boolean => existsSync(dir) && readdirSync(dir).some((n) => n.startsWith(prefix));

/** Processes whose command line mentions `path` (a skopeo still copying into / out of it). */
function processesUsing(path: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(path)) found.push(`${pid}: ${cmd}`);
    } catch {
      /* gone */
    }
  }
  return found;
}

t.test('a failed encapsulate names the destination and leaves it as it was', async (t) => {
  // a new oci: directory (and its new parent)
  const fresh = join(root, 'failed-new', 'img');
  let r = cli(['encapsulate', '--repo', broken, 'main', `oci:${fresh}:t`]);
  t.equal(r.status, 1, 'exit 1');
  t.match(r.stderr, new RegExp(`^error: oci:${fresh}: writing gzip layer: `), 'names the layout');
  t.notOk(existsSync(join(root, 'failed-new')), 'no directory left behind');

  // an existing layout whose index.json cannot be read: refused before any blob is written (the
  // default gzip level gives other blobs than the fixture's --compression-fast)
  const garbage = join(root, 'garbage-index');
  cpSync(base, garbage, { recursive: true });
  writeFileSync(join(garbage, 'index.json'), 'garbage\n');
  const was = snapshot(garbage);
  r = cli(['encapsulate', '--repo', s.repo, 'main', `oci:${garbage}:x`]);
  t.equal(r.status, 1);
  t.match(r.stderr, new RegExp(`^error: oci:${garbage} index\\.json: `), 'names index.json of the layout');
  t.same(snapshot(garbage), was, 'layout as it was: no blobs written into it');

  // oci-archive: with new parents: the message names the archive, not the temporary layout
  const target = join(root, 'failed-arch', 'sub', 'img.tar');
  r = cli(['encapsulate', '--repo', broken, 'main', `oci-archive:${target}:t`]);
  t.equal(r.status, 1);
  t.match(r.stderr, new RegExp(`^error: oci-archive:${target}: writing gzip layer: `), 'names the archive');
  t.notMatch(r.stderr, /\.layout-/, 'not the temporary layout');
  t.notOk(existsSync(join(root, 'failed-arch')), 'no parent directories left behind');
});

function checkExit(t: Test, r: Result, sig: NodeJS.Signals, code: number): void {
  t.ok(r.signalled, `the temporary appeared and ${sig} was sent`);
  t.notOk(r.hung, 'exited after the signal (not still running 30 s later)');
  t.equal(r.code, code, `exit status ${code} (128 + ${sig}): ${r.stderr.trim()}`);
  t.match(r.stderr, new RegExp(`interrupted by ${sig}`));
}

t.test('encapsulate into a new oci: directory, SIGINT while layers are written: no directory left', async (t) => {
  const dir = join(root, 'new-oci', 'img');
  const r = await interrupt(['encapsulate', '--repo', s.repo, 'main', `oci:${dir}:v1`], () => has(dir, '.ostree-oci-tmp-'), 'SIGINT');
  checkExit(t, r, 'SIGINT', 130);
  t.notOk(existsSync(join(root, 'new-oci')), 'the directories it created are gone');
});

t.test('encapsulate into an existing oci: layout, SIGTERM: layout as it was, no .ostree-oci-tmp-*', async (t) => {
  const was = snapshot(base);
  const r = await interrupt(['encapsulate', '--repo', s.repo, 'main', `oci:${base}:second`, '--max-layers', '2'], () => has(base, '.ostree-oci-tmp-'), 'SIGTERM');
  checkExit(t, r, 'SIGTERM', 143);
  t.same(snapshot(base), was, 'same files with the same bytes: no temporaries, no new blobs, index.json untouched');
});

t.test('encapsulate to oci-archive: with new parent directories, SIGHUP: no temp layout, no parents', async (t) => {
  const parent = join(root, 'arch-parent');
  const target = join(parent, 'sub', 'img.tar');
  const r = await interrupt(['encapsulate', '--repo', s.repo, 'main', `oci-archive:${target}:v1`], () => has(join(parent, 'sub'), '.img.tar.layout-'), 'SIGHUP');
  checkExit(t, r, 'SIGHUP', 129);
  t.notOk(existsSync(parent), 'the parent directories it created are gone');
});

t.test('unencapsulate from oci:, SIGINT once objects are staged: nothing staged, stored or referenced', async (t) => {
  const repo = join(root, 'staged-repo');
  ostreeInit(repo, 'bare-user');
  // libostree keeps an aborted transaction's staging directory for the next transaction, which
  // would publish its objects: an interrupted import must delete it.
  const staged = (): boolean => stagedFiles(repo) > 0;
  const r = await interrupt(['unencapsulate', '--repo', repo, `oci:${base}:first`, '--ref', 'x'], staged, 'SIGINT');
  checkExit(t, r, 'SIGINT', 130);
  t.equal(stagedFiles(repo), 0, 'nothing left staged');
  t.equal(countObjects(repo), 0, 'no objects');
  t.same(readdirSync(join(repo, 'refs', 'heads')), [], 'no ref');
  t.same(existsSync(join(repo, 'state')) ? readdirSync(join(repo, 'state')) : [], [], 'no commitpartial mark left');
  t.doesNotThrow(() => ostreeFsck(repo), 'ostree fsck clean');
});

t.test('unencapsulate, SIGINT while the 48 MiB object streams into libostree: the process still exits', async (t) => {
  // Large objects reach libostree through a pipe read on a libuv thread, and Node joins those
  // threads at exit: a read left waiting for bytes the interrupted process never sends kept the
  // process alive for ever after "interrupted by SIGINT".
  const repo = join(root, 'streaming-repo');
  ostreeInit(repo, 'bare-user');
  const r = await interrupt(['unencapsulate', '--repo', repo, `oci:${base}:first`, '--ref', 'x'], threadInPoll, 'SIGINT');
  checkExit(t, r, 'SIGINT', 130);
  t.equal(stagedFiles(repo), 0, 'nothing left staged');
  t.same(readdirSync(join(repo, 'refs', 'heads')), [], 'no ref');
  t.doesNotThrow(() => ostreeFsck(repo), 'ostree fsck clean');
});

t.test('composefs mkimage IMAGE, SIGINT while the image is written: no temp file, no image', async (t) => {
  const d = join(root, 'mkimage');
  mkdirSync(d);
  const dump = join(d, 'big.dump');
  const lines = ['/ 4096 40755 2 0 0 0 0.0 - - -'];
  for (let i = 0; i < 3000; i++) {
    lines.push(`/d${i} 4096 40755 2 0 0 0 0.0 - - -`);
    for (let j = 0; j < 60; j++) lines.push(`/d${i}/f${j} 10 100644 1 0 0 0 0.0 - 0123456789 - user.k${j % 7}=v${i % 5}`);
  }
  writeFileSync(dump, `${lines.join('\n')}\n`);
  const img = join(d, 'out.img');
  const r = await interrupt(['composefs', 'mkimage', '--from-dump', dump, img], () => has(d, '.out.img.tmp-'), 'SIGINT');
  checkExit(t, r, 'SIGINT', 130);
  t.same(readdirSync(d), ['big.dump'], 'no temp file and no image left');
});

t.test('docker://: SIGINT during a push and during a pull leave no temp dirs and no skopeo running', async (t) => {
  const host = await startRegistry(t);
  const tmpDir = join(root, 'tmpdir');
  mkdirSync(tmpDir);
  const env = { OSTREE_OCI_TMPDIR: tmpDir };

  // push: signalled once the temporary layout is complete and skopeo is pushing it
  const pushRef = `docker://${host}/test/interrupted:v1`;
  const pushing = (): boolean => readdirSync(tmpDir).some((d) => d.startsWith('ostree-oci-push-') && existsSync(join(tmpDir, d, 'layout', 'index.json')));
  const r = await interrupt(['encapsulate', '--repo', s.repo, 'main', pushRef, '--no-tls-verify'], pushing, 'SIGINT', env);
  checkExit(t, r, 'SIGINT', 130);
  t.same(readdirSync(tmpDir), [], 'no ostree-oci-push-* left');
  t.same(processesUsing(tmpDir), [], 'no skopeo left running');

  // pull: an image in the registry, unencapsulate signalled as soon as its temp dir appears
  await runTool('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${base}:first`, `docker://${host}/test/full:v1`]);
  const repo = join(root, 'pull-repo');
  ostreeInit(repo, 'bare-user');
  const pulled = (): boolean => has(tmpDir, 'ostree-oci-pull-');
  const u = await interrupt(['unencapsulate', '--repo', repo, `docker://${host}/test/full:v1`, '--no-tls-verify'], pulled, 'SIGINT', env);
  checkExit(t, u, 'SIGINT', 130);
  t.same(readdirSync(tmpDir), [], 'no ostree-oci-pull-* left');
  t.same(processesUsing(tmpDir), [], 'no skopeo left running');
  t.same(readdirSync(join(repo, 'refs', 'heads')), [], 'no ref in the repository');
  t.doesNotThrow(() => ostreeFsck(repo), 'ostree fsck clean');
});
