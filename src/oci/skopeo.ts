/**
 * The `docker://` transport goes through `skopeo copy` (containers/image does the registry
 * protocol, auth, retries). Pulls copy into a temporary skopeo `dir:` (keeps the registry's
 * manifest bytes and digest); pushes copy from a temporary `oci:` layout.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { registerChild } from '../cleanup.js';
import { SkopeoError } from './errors.js';

export interface SkopeoCopyOptions {
  /** false → `--src-tls-verify=false` (e.g. a loopback registry over http). */
  srcTlsVerify?: boolean;
  /** false → `--dest-tls-verify=false`. */
  destTlsVerify?: boolean;
  /** `--digestfile`: skopeo writes the destination manifest digest there. */
  digestFile?: string;
  /** `--authfile` for the registry side. */
  authFile?: string;
  /** `--override-os` / `--override-arch` / `--override-variant` when picking from a manifest list. */
  platform?: { os?: string; architecture?: string; variant?: string };
  /** `--preserve-digests`: fail instead of changing the manifest. */
  preserveDigests?: boolean;
  /** Extra arguments placed before SRC DEST. */
  extraArgs?: string[];
  signal?: AbortSignal;
  /**
   * The image the user named, when SRC or DEST is a temporary copy of it: errors then name this
   * instead of the temporary path.
   */
  name?: string;
}

const SKOPEO = process.env['OSTREE_OCI_SKOPEO'] ?? 'skopeo';

function hasPolicy(): boolean {
  const xdg = process.env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config');
  return existsSync(join(xdg, 'containers', 'policy.json')) || existsSync('/etc/containers/policy.json');
}

/** Arguments of `skopeo copy` for these options (exported for tests/diagnostics). */
export function skopeoCopyArgs(src: string, dest: string, opts: SkopeoCopyOptions = {}): string[] {
  const args: string[] = [];
  // Without any policy.json skopeo refuses to run; we verify digests ourselves.
  if (!hasPolicy()) args.push('--insecure-policy');
  args.push('copy', '--quiet');
  if (opts.srcTlsVerify === false) args.push('--src-tls-verify=false');
  if (opts.destTlsVerify === false) args.push('--dest-tls-verify=false');
  if (opts.digestFile) args.push('--digestfile', opts.digestFile);
  if (opts.authFile) {
    if (src.startsWith('docker://')) args.push('--src-authfile', opts.authFile);
    if (dest.startsWith('docker://')) args.push('--dest-authfile', opts.authFile);
  }
  if (opts.platform?.os) args.push('--override-os', opts.platform.os);
  if (opts.platform?.architecture) args.push('--override-arch', opts.platform.architecture);
  if (opts.platform?.variant) args.push('--override-variant', opts.platform.variant);
  if (opts.preserveDigests) args.push('--preserve-digests');
  if (opts.extraArgs) args.push(...opts.extraArgs);
  args.push(src, dest);
  return args;
}

/**
 * skopeo silently ignores a missing auth file and goes on anonymously; a typo must not do that.
 * Throws a SkopeoError naming the file when it cannot be read.
 */
export function checkAuthFile(file: string): void {
  try {
    accessSync(file, constants.R_OK);
  } catch (e) {
    throw new SkopeoError(`auth file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { authFile: file });
  }
}

/** Run `skopeo copy SRC DEST`; throws SkopeoError with skopeo's message on failure. */
export async function skopeoCopy(src: string, dest: string, opts: SkopeoCopyOptions = {}): Promise<void> {
  if (opts.authFile) checkAuthFile(opts.authFile);
  const args = skopeoCopyArgs(src, dest, opts);
  await new Promise<void>((resolve, reject) => {
    const child = spawn(SKOPEO, args, { stdio: ['ignore', 'ignore', 'pipe'], signal: opts.signal });
    // skopeo writes into (or reads from) our temporaries: an interruption stops it first.
    const unregister = registerChild(child);
    const what = opts.name !== undefined ? `${opts.name}: skopeo copy` : `skopeo copy ${src} → ${dest}`;
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-8192);
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      unregister();
      reject(
        new SkopeoError(
          e.code === 'ENOENT' ? `skopeo not found (needed for docker:// references; install skopeo)` : `${what}: ${e.message}`,
          { args },
        ),
      );
    });
    child.on('close', (code, sig) => {
      unregister();
      if (code === 0) return resolve();
      const msg = stderr.trim().split('\n').filter(Boolean).pop() ?? '';
      const clean = msg.replace(/^time="[^"]*" level=\w+ msg="(.*)"$/, '$1').replace(/\\"/g, '"');
      reject(
        new SkopeoError(`${what} failed (${sig ?? `exit ${code}`}): ${clean}`, {
          args,
          exitCode: code,
          stderr,
        }),
      );
    });
  });
}
