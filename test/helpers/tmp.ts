/** Temporary directories for tests, removed when the test ends (kept with KEEP_TMP=1). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

interface Teardown {
  teardown(fn: () => void): void;
}

export function tmp(t: Teardown, prefix = 'ostree-oci-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => {
    if (!process.env['KEEP_TMP']) rmSync(d, { recursive: true, force: true });
  });
  return d;
}

/** Run the built CLI; never throws, returns status and output. */
export function cli(args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input: opts.input,
    env: { ...process.env, ...opts.env },
    maxBuffer: 256 * 1024 * 1024,
  });
  return { status: r.status ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** `ostree fsck` on a repo; returns its output, throws when it fails. */
export function ostreeFsck(repo: string): string {
  return execFileSync('ostree', ['fsck', `--repo=${repo}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Snapshot of a repo's refs and object files (names), for "nothing changed" assertions. */
export function repoState(repo: string): string {
  return execFileSync('sh', ['-c', `cd '${repo}' && find refs objects -type f -o -type l | sort`], { encoding: 'utf8' });
}

interface SubtestHost {
  test(name: string, fn: (t: { pass(msg: string): void; fail(msg: string): void }) => Promise<void>): unknown;
}

/**
 * A test file's shared fixture, built in a first subtest of its own rather than at the top level:
 * a failure there is a TAP failure that carries the message (what failed, with the tool's stderr)
 * instead of a stack on stderr and "no tests found". Later tests that need it fail too.
 */
export function fixture(t: SubtestHost, what: string, build: () => void | Promise<void>): void {
  t.test(`fixture: ${what}`, async (t) => {
    try {
      await build();
      t.pass(`${what}: built`);
    } catch (e) {
      t.fail(`${what}: ${(e as Error).message}`);
    }
  });
}

/**
 * Make sure dist/ is built, for a test file run on its own. Only builds when a source is newer
 * than the last build (scripts/setup.sh), so during `npm test` — which builds first — it never
 * rewrites dist/ under the CLI processes that other test files are running at the same time.
 */
export function ensureBuilt(): void {
  execFileSync('bash', [join(ROOT, 'scripts', 'setup.sh')], { cwd: ROOT, stdio: 'ignore' });
}
