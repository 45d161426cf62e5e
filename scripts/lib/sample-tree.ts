/**
 * Deterministic sample trees for the demo, tests and benchmarks, and helpers that commit them with
 * the real `ostree` CLI. Content is generated from a seed, so the same options give the same commit.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface SampleTreeOptions {
  /** Size of the largest file in MiB (default 3). */
  bigFileMiB?: number;
  /** Add `usr/etc`, `var/tmp` and names longer than 100 bytes (container layout cases). */
  containerLayout?: boolean;
  /** Extra bytes mixed into generated content, to make a variant of the same tree. */
  variant?: string;
  /** Skip xattrs (for filesystems or repo modes that cannot keep them). */
  noXattrs?: boolean;
}

/** A tiny deterministic PRNG (xorshift32) so content does not depend on Math.random. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

export function pseudoRandomBytes(n: number, seed: number): Buffer {
  const r = prng(seed);
  const b = Buffer.allocUnsafe(n);
  let i = 0;
  for (; i + 4 <= n; i += 4) b.writeUInt32LE(r(), i);
  for (; i < n; i++) b[i] = r() & 0xff;
  return b;
}

function setXattr(path: string, name: string, value: string): void {
  execFileSync('setfattr', ['-h', '-n', name, '-v', value, path]);
}

/**
 * Write the sample tree into `dir` (which must not exist). It has regular files (empty, small,
 * multi-MiB), executables, setuid, symlinks (relative, absolute, dangling), hardlinks, long and
 * non-ASCII names, user.* xattrs and nested directories.
 */
export function writeSampleTree(dir: string, opts: SampleTreeOptions = {}): void {
  const v = opts.variant ?? '';
  const big = (opts.bigFileMiB ?? 3) * 1024 * 1024;
  mkdirSync(dir, { recursive: true });
  const w = (rel: string, data: string | Buffer, mode = 0o644): string => {
    const p = join(dir, rel);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, data);
    chmodSync(p, mode);
    return p;
  };
  w('usr/share/doc/README', `This is the ostree-oci sample tree${v}.\n`);
  w('usr/share/empty', '');
  w('usr/lib/big.bin', pseudoRandomBytes(big, 42 + v.length));
  w('usr/lib/4096.bin', pseudoRandomBytes(4096, 7));
  w('usr/lib/4097.bin', pseudoRandomBytes(4097, 8));
  w('usr/bin/hello', `#!/bin/sh\necho hello${v}\n`, 0o755);
  w('usr/bin/su-helper', '#!/bin/sh\nexit 0\n', 0o4755);
  w('usr/bin/sg-helper', '#!/bin/sh\nexit 0\n', 0o2755);
  w('usr/share/ünïcödé-名前.txt', 'non-ASCII name\n');
  w(`usr/share/${'long-name-'.repeat(20)}end`, 'a 205-byte name\n');
  w('usr/share/deep/a/b/c/d/e/f/g/leaf', 'deep\n');
  w('usr/share/with space and\ttab', 'odd name\n');
  const xf = w('usr/share/xattr-file', 'has xattrs\n');
  symlinkSync('../share/doc/README', join(dir, 'usr/bin/readme-rel'));
  symlinkSync('/usr/share/doc/README', join(dir, 'usr/bin/readme-abs'));
  symlinkSync('does/not/exist', join(dir, 'usr/bin/dangling'));
  linkSync(join(dir, 'usr/bin/hello'), join(dir, 'usr/bin/hello-hardlink'));
  mkdirSync(join(dir, 'usr/share/empty-dir'), { recursive: true });
  mkdirSync(join(dir, 'usr/share/restricted'), { recursive: true });
  chmodSync(join(dir, 'usr/share/restricted'), 0o750);
  if (!opts.noXattrs) {
    setXattr(xf, 'user.zeta', 'z');
    setXattr(xf, 'user.alpha', 'A');
    setXattr(join(dir, 'usr/share/restricted'), 'user.dirattr', 'dv');
  }
  if (opts.containerLayout) {
    w('usr/etc/os-release', `NAME=sample${v}\n`);
    w('usr/etc/hostname', 'sample\n');
    mkdirSync(join(dir, 'var/tmp'), { recursive: true });
    chmodSync(join(dir, 'var/tmp'), 0o1777);
    w(`usr/share/${'x'.repeat(150)}/${'y'.repeat(120)}`, 'long path\n');
    mkdirSync(join(dir, 'usr/lib/modules/6.1.0-sample'), { recursive: true });
    w('usr/lib/modules/6.1.0-sample/vmlinuz', pseudoRandomBytes(64 * 1024, 99));
  }
}

export interface CommitOptions {
  branch?: string;
  subject?: string;
  /** Fixed timestamp (seconds since the epoch) for reproducible commits. */
  timestamp?: number;
  extraArgs?: string[];
}

/** Commit `dir` with the real `ostree` CLI (host 2022.7); returns the commit checksum. */
export function ostreeCommit(repo: string, dir: string, opts: CommitOptions = {}): string {
  const ts = new Date((opts.timestamp ?? 1_700_000_000) * 1000).toISOString();
  const out = execFileSync(
    'ostree',
    [
      'commit',
      `--repo=${repo}`,
      `--branch=${opts.branch ?? 'main'}`,
      `--subject=${opts.subject ?? 'sample'}`,
      `--timestamp=${ts}`,
      `--tree=dir=${dir}`,
      ...(opts.extraArgs ?? []),
    ],
    { encoding: 'utf8' },
  );
  return out.trim();
}

export function ostreeInit(repo: string, mode: string): void {
  execFileSync('ostree', ['init', `--repo=${repo}`, `--mode=${mode}`]);
}

/**
 * A larger synthetic tree for benchmarks: `files` files spread over nested directories, sizes
 * drawn from a skewed distribution (many small, a few large) adding up to about `totalMiB`.
 */
export function writeSyntheticTree(dir: string, files: number, totalMiB: number, seed = 1): void {
  const r = prng(seed);
  const avg = (totalMiB * 1048576) / files;
  for (let i = 0; i < files; i++) {
    const sub = join(dir, `d${i % 37}`, `e${i % 11}`);
    if (i < 37 * 11) mkdirSync(sub, { recursive: true });
    // Exponential-ish sizes around the average.
    const u = (r() + 1) / 4294967297;
    const size = Math.min(Math.floor(-Math.log(u) * avg), 64 * 1048576);
    writeFileSync(join(sub, `f${i}`), pseudoRandomBytes(size, seed * 1000003 + i));
  }
}
