/**
 * Deployments of an ostree sysroot directory, as `ostree admin status` lists them: the ostree
 * boot loader entries `DIR/boot/loader/entries/ostree-*.conf`, highest `version` first (index 0
 * is the default deployment). Each entry's `ostree=/ostree/boot.N/<os>/<bootcsum>/<serial>` kernel
 * argument is a symlink chain inside the sysroot ending at
 * `DIR/ostree/deploy/<os>/deploy/<checksum>.<serial>`; the commit's objects are in
 * `DIR/ostree/repo`.
 *
 * The booted deployment is the one the running kernel's `ostree=` argument names, and only when
 * `/run/ostree-booted` exists (what libostree checks).
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { MigrateSourceError } from './errors.js';

export interface Deployment {
  /** Position in `ostree admin status` order (0 = default). */
  index: number;
  /** The OS name ("stateroot"). */
  stateroot: string;
  checksum: string;
  serial: number;
  /** The deployment checkout directory. */
  path: string;
  /** The `ostree=` kernel argument of its boot entry. */
  ostreeArg: string;
  /** The boot entry file. */
  entry: string;
  /** Boot entry `version` (higher first). */
  version: number;
  title: string;
}

export interface Sysroot {
  path: string;
  repoPath: string;
  deployments: Deployment[];
}

const DEPLOY_RE = /^([0-9a-f]{64})\.(\d+)$/;

function parseEntry(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const sp = t.search(/\s/);
    if (sp < 0) m.set(t, '');
    else m.set(t.slice(0, sp), t.slice(sp).trim());
  }
  return m;
}

/** `ostree=` from a kernel command line / options string (last one wins, as the kernel does). */
export function ostreeKarg(cmdline: string): string | null {
  let v: string | null = null;
  for (const a of cmdline.trim().split(/\s+/)) if (a.startsWith('ostree=')) v = a.slice('ostree='.length);
  return v;
}

/** Resolve an `ostree=` path inside sysroot `dir` to a deployment directory (symlinks followed within). */
function resolveOstreeArg(dir: string, arg: string, where: string): { path: string; stateroot: string; checksum: string; serial: number } {
  const abs = join(dir, arg);
  let real: string;
  try {
    real = realpathSync(abs);
  } catch (e) {
    throw new MigrateSourceError(`${where}: ostree=${arg} does not resolve in sysroot ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const rel = relative(realpathSync(dir), real).split('/');
  // ostree/deploy/<os>/deploy/<checksum>.<serial>
  const m = rel.length === 5 && rel[0] === 'ostree' && rel[1] === 'deploy' && rel[3] === 'deploy' ? DEPLOY_RE.exec(rel[4]!) : null;
  if (!m) throw new MigrateSourceError(`${where}: ostree=${arg} leads to ${real}, not to ostree/deploy/<os>/deploy/<checksum>.<serial> in ${dir}`);
  return { path: real, stateroot: rel[2]!, checksum: m[1]!, serial: Number(m[2]) };
}

/** Open a sysroot directory and list its deployments. */
export function openSysroot(dir: string): Sysroot {
  const path = resolve(dir);
  if (!existsSync(path) || !statSync(path).isDirectory()) throw new MigrateSourceError(`sysroot ${dir} does not exist or is not a directory`);
  const repoPath = join(path, 'ostree', 'repo');
  if (!existsSync(join(repoPath, 'config')) || !existsSync(join(path, 'ostree', 'deploy'))) {
    throw new MigrateSourceError(`${dir} is not an ostree sysroot (no ostree/repo or ostree/deploy)`);
  }
  const entriesDir = join(path, 'boot', 'loader', 'entries');
  const found: Omit<Deployment, 'index'>[] = [];
  const names = existsSync(entriesDir) ? readdirSync(entriesDir).filter((n) => n.startsWith('ostree-') && n.endsWith('.conf')) : [];
  for (const n of names) {
    const entry = join(entriesDir, n);
    const kv = parseEntry(readFileSync(entry, 'utf8'));
    const arg = ostreeKarg(kv.get('options') ?? '');
    if (!arg) throw new MigrateSourceError(`boot entry ${entry} has no ostree= argument`);
    const d = resolveOstreeArg(path, arg, `boot entry ${entry}`);
    const version = Number(kv.get('version') ?? '0');
    found.push({ ...d, ostreeArg: arg, entry, version: Number.isFinite(version) ? version : 0, title: kv.get('title') ?? '' });
  }
  found.sort((a, b) => b.version - a.version);
  return { path, repoPath, deployments: found.map((d, index) => ({ ...d, index })) };
}

export function describeDeployments(s: Sysroot): string {
  return s.deployments.length ? s.deployments.map((d) => `${d.index}: ${d.stateroot} ${d.checksum}.${d.serial}`).join(', ') : 'none';
}

/** Deployment number `index` (as `ostree admin status` lists them). */
export function deploymentByIndex(s: Sysroot, index: number): Deployment {
  if (!Number.isInteger(index) || index < 0) throw new UsageError(`--deployment must be a non-negative integer, got ${index}`);
  const d = s.deployments[index];
  if (!d) throw new MigrateSourceError(`sysroot ${s.path} has no deployment ${index} (deployments: ${describeDeployments(s)})`);
  return d;
}

export interface BootedOptions {
  /** Marker file libostree checks (default /run/ostree-booted). */
  bootedMarker?: string;
  /** Kernel command line (default /proc/cmdline). */
  cmdline?: string;
}

/** The deployment the running system booted, when this sysroot is the booted one. */
export function bootedDeployment(s: Sysroot, opts: BootedOptions = {}): Deployment {
  const marker = opts.bootedMarker ?? '/run/ostree-booted';
  const cmdlinePath = opts.cmdline ?? '/proc/cmdline';
  if (!existsSync(marker)) {
    throw new MigrateSourceError(`--booted: the running system was not booted by ostree (${marker} does not exist), so sysroot ${s.path} has no booted deployment; use --deployment N`);
  }
  let cmdline: string;
  try {
    cmdline = readFileSync(cmdlinePath, 'utf8');
  } catch (e) {
    throw new MigrateSourceError(`--booted: cannot read ${cmdlinePath}: ${(e as Error).message}`);
  }
  const arg = ostreeKarg(cmdline);
  if (!arg) throw new MigrateSourceError(`--booted: the kernel command line (${cmdlinePath}) has no ostree= argument`);
  let target: { path: string };
  try {
    target = resolveOstreeArg(s.path, arg, `--booted (${cmdlinePath})`);
  } catch (e) {
    throw new MigrateSourceError(`--booted: sysroot ${s.path} is not the booted one: ${(e as Error).message}`);
  }
  const d = s.deployments.find((x) => x.path === target.path);
  if (!d) throw new MigrateSourceError(`--booted: ostree=${arg} names ${target.path}, which is not a deployment of ${s.path} (deployments: ${describeDeployments(s)})`);
  return d;
}

/** A default image name for a deployment: `<stateroot>/<checksum>.<serial>`. */
export const deploymentName = (d: Deployment): string => `${d.stateroot}/${basename(d.path)}`;

