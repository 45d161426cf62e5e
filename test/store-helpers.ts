/** Helpers for test/store-*.test.ts: signed sample images, derived images, tree maps. */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Repo, ObjectType } from '../src/ostree/repo.js';
import { createImageWriter, openImage, type LayerResult } from '../src/oci/index.js';
import { ostreeCommit, ostreeInit, writeSampleTree, type SampleTreeOptions } from '../scripts/lib/sample-tree.js';
import { cli } from './helpers/tmp.js';

/** Run the CLI; throw with stderr when it fails; returns stdout. */
export function run(...args: string[]): string {
  const r = cli(args);
  if (r.status !== 0) throw new Error(`ostree-oci ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

export function runJson<T = Record<string, unknown>>(...args: string[]): T {
  return JSON.parse(run(...args, '--json')) as T;
}

export interface SignedRepo {
  repo: string;
  commit: string;
  key: string;
  pub: string;
}

/**
 * A source repo whose `main` is the sample tree committed with the ostree CLI, then re-committed
 * with `commit-composefs` (ostree.composefs.digest.v0) and signed with `sign --keyfile`.
 */
export function signedComposefsRepo(dir: string, opts: SampleTreeOptions & { key?: string } = {}): SignedRepo {
  const repo = join(dir, 'src-repo');
  const tree = join(dir, 'tree');
  writeSampleTree(tree, { containerLayout: true, bigFileMiB: 1, ...opts });
  ostreeInit(repo, 'bare-user');
  ostreeCommit(repo, tree, { branch: 'plain' });
  const commit = run('commit-composefs', '--repo', repo, 'plain', '-b', 'main').trim();
  const key = opts.key ?? join(dir, 'key');
  if (!opts.key) run('keygen', '--out', key);
  run('sign', '--repo', repo, 'main', '--keyfile', key);
  return { repo, commit, key, pub: `${key}.pub` };
}

export function newRepo(path: string, mode = 'bare-user'): string {
  ostreeInit(path, mode);
  return path;
}

export function refs(repo: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of execFileSync('ostree', ['refs', `--repo=${repo}`], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
    out[line] = execFileSync('ostree', ['rev-parse', `--repo=${repo}`, line], { encoding: 'utf8' }).trim();
  }
  return out;
}

export interface TreeEntry {
  kind: 'dir' | 'file';
  checksum: string;
  /** dirmeta checksum for directories. */
  meta?: string;
}

/** path → entry for every file and directory of a commit (our Repo.walk). */
export function treeMap(repoPath: string, rev: string): Map<string, TreeEntry> {
  const r = Repo.open(repoPath);
  try {
    const m = new Map<string, TreeEntry>();
    for (const e of r.walk(r.resolveRev(rev))) {
      if (e.kind === 'dir') m.set(e.path, { kind: 'dir', checksum: e.tree, meta: e.meta });
      else m.set(e.path, { kind: 'file', checksum: e.checksum });
    }
    return m;
  } finally {
    r.close();
  }
}

export function commitInfo(repoPath: string, rev: string) {
  const r = Repo.open(repoPath);
  try {
    const c = r.loadCommit(rev);
    return { ...c, commitmeta: r.readCommitMetaBytes(c.checksum) };
  } finally {
    r.close();
  }
}

export function hasCommit(repoPath: string, commit: string): boolean {
  const r = Repo.open(repoPath);
  try {
    return r.hasObject(ObjectType.COMMIT, commit);
  } finally {
    r.close();
  }
}

/**
 * A derived image: every layer (blob) of `base` copied verified, plus `tar` as a new gzip layer on
 * top; config = the base config with rootfs.diff_ids extended (ostree.final-diffid unchanged, so
 * the new layer is a derived layer) and one more history entry.
 */
export async function buildDerivedImage(
  base: string,
  dest: string,
  tars: Buffer[],
  opts: { annotations?: Record<string, string>; dropOstreeLabels?: boolean; baseLayers?: boolean } = {},
): Promise<string> {
  const img = await openImage(base);
  try {
    const w = await createImageWriter(dest);
    const layers: LayerResult[] = [];
    if (opts.baseLayers !== false) {
      for (const [i, d] of img.layers.entries()) {
        await w.addBlob(() => img.openLayerCompressed(i), { expected: { digest: d.digest, size: d.size } });
        layers.push({ descriptor: d, diffId: img.diffIds[i]!, uncompressedSize: 0, compression: 'gzip' });
      }
    }
    for (const t of tars) layers.push(await w.addLayer(Readable.from([t])));
    const { rootfs: _r, ...cfg } = img.config;
    const config = structuredClone(cfg) as typeof cfg;
    if (opts.dropOstreeLabels && config.config?.Labels) {
      for (const k of Object.keys(config.config.Labels)) if (k.startsWith('ostree.')) delete config.config.Labels[k];
    }
    config.history = [...(opts.baseLayers === false ? [] : (config.history ?? [])), ...tars.map(() => ({ created_by: 'derived layer (test)' }))];
    const commitOpts: Parameters<typeof w.commit>[0] = { config, layers };
    if (opts.annotations) commitOpts.annotations = opts.annotations;
    const r = await w.commit(commitOpts);
    return r.manifestDigest;
  } finally {
    await img.close();
  }
}

/** `ostree cat` of a file in a commit. */
export function ostreeCat(repo: string, rev: string, path: string): Buffer {
  return execFileSync('ostree', ['cat', `--repo=${repo}`, rev, path], { maxBuffer: 1 << 30 });
}
