/**
 * A cached Debian bookworm minbase root filesystem, for benchmarks and tests that want a real OS
 * tree (about 10 000 files, ~200 MiB). Built once with `debootstrap --variant=minbase bookworm` into
 * `<root>/.cache/bookworm-minbase` (git-ignored) and reused afterwards. Also cached, each built
 * on first use from the rootfs:
 *
 *  - `bookworm-minbase.tar`: a plain tar of the rootfs (GNU tar, numeric owners, xattrs), the input
 *    of `ostree commit --tree=tar=…`;
 *  - `bookworm-minbase-repo-<mode>`: an ostree repo holding the rootfs committed with the real
 *    `ostree` CLI on branch `bookworm`, at a fixed timestamp (reproducible commit).
 *
 * Device nodes, sockets and FIFOs (debootstrap puts a few under /dev) cannot be committed by ostree,
 * so the cached rootfs has /dev emptied. Creation is guarded by a lock directory so that two
 * processes (benchmarks of different engineers) do not build the same thing at once; builds go to
 * a temp name and are renamed into place, so a half-built cache is never picked up.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** Repository root (works from scripts/lib and dist/scripts/lib). */
export const PROJECT_ROOT = existsSync(join(here, '..', '..', 'package.json'))
  ? join(here, '..', '..')
  : join(here, '..', '..', '..');

export const BOOKWORM_BRANCH = 'bookworm';
/** Fixed commit timestamp so the cached commit checksum is reproducible for a given rootfs. */
export const BOOKWORM_TIMESTAMP = '2024-01-01T00:00:00Z';

export interface BookwormPaths {
  cacheDir: string;
  rootfs: string;
  tar: string;
}

export function bookwormPaths(root = PROJECT_ROOT): BookwormPaths {
  const cacheDir = join(root, '.cache');
  return { cacheDir, rootfs: join(cacheDir, 'bookworm-minbase'), tar: join(cacheDir, 'bookworm-minbase.tar') };
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Run `fn` while holding `<lock>` (a directory); waits up to 30 minutes for another holder. */
function withLock<T>(lock: string, fn: () => T): T {
  const deadline = Date.now() + 30 * 60 * 1000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // A lock older than 2 hours is stale (a killed build).
      const st = statSync(lock, { throwIfNoEntry: false });
      if (st && Date.now() - st.mtimeMs > 2 * 3600 * 1000) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for lock ${lock}`);
      sleep(2000);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** The cached rootfs directory, built with debootstrap on first use (needs root and network). */
export function ensureBookwormRootfs(root = PROJECT_ROOT, log: (m: string) => void = () => {}): string {
  const p = bookwormPaths(root);
  if (existsSync(p.rootfs)) return p.rootfs;
  mkdirSync(p.cacheDir, { recursive: true });
  return withLock(`${p.rootfs}.lock`, () => {
    if (existsSync(p.rootfs)) return p.rootfs;
    const tmp = `${p.rootfs}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    log(`debootstrap --variant=minbase bookworm ${tmp} (one time, a few minutes)`);
    execFileSync('debootstrap', ['--variant=minbase', 'bookworm', tmp, 'http://deb.debian.org/debian'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    // ostree cannot commit device nodes, sockets or FIFOs.
    for (const n of readdirSync(join(tmp, 'dev'))) rmSync(join(tmp, 'dev', n), { recursive: true, force: true });
    execFileSync('find', [tmp, '(', '-type', 'b', '-o', '-type', 'c', '-o', '-type', 'p', '-o', '-type', 's', ')', '-delete']);
    renameSync(tmp, p.rootfs);
    return p.rootfs;
  });
}

/** A plain tar of the cached rootfs (input for `ostree commit --tree=tar=`). */
export function ensureBookwormTar(root = PROJECT_ROOT, log: (m: string) => void = () => {}): string {
  const p = bookwormPaths(root);
  if (existsSync(p.tar)) return p.tar;
  const rootfs = ensureBookwormRootfs(root, log);
  return withLock(`${p.tar}.lock`, () => {
    if (existsSync(p.tar)) return p.tar;
    const tmp = `${p.tar}.tmp-${process.pid}`;
    log(`tar of ${rootfs}`);
    execFileSync('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', rootfs, '-cf', tmp, '.']);
    renameSync(tmp, p.tar);
    return p.tar;
  });
}

/**
 * An ostree repo (`mode`: archive, bare-user, …) holding the rootfs on branch `bookworm`, committed
 * by the real ostree CLI. Returns the repo path and commit checksum.
 */
export function ensureBookwormRepo(
  mode: 'archive' | 'bare-user' | 'bare' = 'bare-user',
  root = PROJECT_ROOT,
  log: (m: string) => void = () => {},
): { repo: string; commit: string } {
  const p = bookwormPaths(root);
  const repo = join(p.cacheDir, `bookworm-minbase-repo-${mode}`);
  const resolve = (): string =>
    execFileSync('ostree', ['rev-parse', `--repo=${repo}`, BOOKWORM_BRANCH], { encoding: 'utf8' }).trim();
  if (existsSync(join(repo, 'config'))) return { repo, commit: resolve() };
  const rootfs = ensureBookwormRootfs(root, log);
  return withLock(`${repo}.lock`, () => {
    if (existsSync(join(repo, 'config'))) return { repo, commit: resolve() };
    const tmp = `${repo}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    log(`ostree commit of ${rootfs} into a ${mode} repo`);
    execFileSync('ostree', ['init', `--repo=${tmp}`, `--mode=${mode}`]);
    execFileSync('ostree', [
      'commit',
      `--repo=${tmp}`,
      `--branch=${BOOKWORM_BRANCH}`,
      '--subject=Debian bookworm minbase',
      `--timestamp=${BOOKWORM_TIMESTAMP}`,
      '--add-metadata-string=version=12',
      `--tree=dir=${rootfs}`,
    ]);
    renameSync(tmp, repo);
    return { repo, commit: resolve() };
  });
}
