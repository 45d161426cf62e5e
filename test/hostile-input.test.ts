/**
 * Hostile input (issue 9): regression tests for what the fuzzer (scripts/fuzz.ts) found, and the
 * configurable caps of src/limits.ts through the CLI (`--limit`, OSTREE_OCI_LIMITS) and the library.
 * Every rejected import must exit non-zero with a message naming the file/field/cap and leave the
 * repository exactly as it was (refs, objects; `ostree fsck` clean).
 */
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { DEFAULT_LIMITS, LimitError, parseLimits, resolveLimits } from '../src/limits.js';
import { OstreeOciError } from '../src/errors.js';
import { Repo } from '../src/ostree/repo.js';
import { unencapsulate } from '../src/container/index.js';
import { pullImage } from '../src/store/index.js';
import { ostreeInit } from '../scripts/lib/sample-tree.js';
import { cloneDraft, loadDraft, writeDraft, type ImageDraft } from '../scripts/lib/fuzz/layout.js';
import { objectName } from '../scripts/lib/fuzz/mutations.js';
import { fixChecksum, parseTar, writeTar } from '../scripts/lib/fuzz/tar.js';
import { shapeOf } from '../scripts/lib/fuzz/runner.js';
import { makeSampleRepo, type SampleRepo } from './container-helpers.js';
import { CLI, ensureBuilt, fixture, ostreeFsck, repoState, tmp } from './helpers/tmp.js';

// Build dist/ when a source is newer than the last build (idempotent, fast when up to date).
ensureBuilt();

const root = tmp(t, 'ostree-oci-hostile-');
const base = join(root, 'base');
let s!: SampleRepo;
let baseDraft!: ImageDraft;
fixture(t, 'sample repo encapsulated into a 3-layer image', () => {
  s = makeSampleRepo(root);
  const r = spawnSync(process.execPath, [CLI, 'encapsulate', '--repo', s.repo, 'main', `oci:${base}`, '--max-layers', '3', '--compression-fast']);
  if (r.status !== 0) throw new Error(`encapsulate: exit ${r.status}: ${r.stderr.toString()}`);
  baseDraft = loadDraft(base);
});

let n = 0;
function image(edit: (d: ImageDraft) => void): string {
  const d = cloneDraft(baseDraft);
  edit(d);
  const dir = join(root, `img-${n++}`);
  writeDraft(d, dir);
  return dir;
}

function freshRepo(): string {
  const r = join(root, `repo-${n++}`);
  ostreeInit(r, 'bare-user');
  return r;
}

/** Run the CLI with a hard timeout (a hang is a failure, not a stuck test). */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string; timedOut: boolean } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 60_000, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString(), timedOut: r.error !== undefined || r.signal === 'SIGTERM' };
}

type Importer = 'unencapsulate' | 'pull';
const COMMAND: Record<Importer, string[]> = { unencapsulate: ['unencapsulate', '--ref', 'x'], pull: ['image', 'pull'] };

/** The importers reject `img` with a message matching `re`; the repositories stay untouched. */
function rejects(t: Test, img: string, re: RegExp, extra: string[] = [], env: NodeJS.ProcessEnv = {}, importers: Importer[] = ['unencapsulate', 'pull']): void {
  for (const cmd of importers.map((i) => COMMAND[i])) {
    const repo = freshRepo();
    const before = repoState(repo);
    const r = cli([...extra, ...cmd, '--repo', repo, `oci:${img}`], env);
    t.notOk(r.timedOut, `${cmd[0]}: finishes (no hang)`);
    t.equal(r.status, 1, `${cmd[0]}: exit status 1 (${r.stderr.trim().slice(0, 300)})`);
    t.match(r.stderr, re, `${cmd[0]}: the message names the cause`);
    t.notMatch(r.stderr, /\n\s+at /, `${cmd[0]}: a one-line message, no stack trace`);
    t.equal(repoState(repo), before, `${cmd[0]}: repository unchanged`);
    t.doesNotThrow(() => ostreeFsck(repo), `${cmd[0]}: ostree fsck clean`);
  }
}

t.test('sanity: the base image imports with both importers', async (t) => {
  const r1 = cli(['unencapsulate', '--repo', freshRepo(), `oci:${base}`]);
  t.equal(r1.status, 0, r1.stderr);
  t.equal(r1.stdout.trim(), s.commit);
  const r2 = cli(['image', 'pull', '--repo', freshRepo(), `oci:${base}`]);
  t.equal(r2.status, 0, r2.stderr);
});

t.test('layout files that are not regular files (was: EISDIR crash, /dev/zero and FIFO hangs)', async (t) => {
  // Both importers read layouts through the same source (src/oci/source.ts): each kind is tried
  // with one of them, alternating.
  const kinds = ['dir', 'fifo', 'zero'] as const;
  kinds.forEach((kind, k) => {
    const idx = image(() => {});
    rmSync(join(idx, 'index.json'));
    if (kind === 'dir') mkdirSync(join(idx, 'index.json'));
    else if (kind === 'fifo') execFileSync('mkfifo', [join(idx, 'index.json')]);
    else symlinkSync('/dev/zero', join(idx, 'index.json'));
    const one: Importer[] = [k % 2 ? 'pull' : 'unencapsulate'];
    const other: Importer[] = [k % 2 ? 'unencapsulate' : 'pull'];
    t.test(`index.json is a ${kind}`, async (t) => rejects(t, idx, /index\.json.*not a regular file/, [], {}, one));
    const blob = image((d) => (d.layers[1]!.special = kind));
    t.test(`a layer blob is a ${kind}`, async (t) => rejects(t, blob, /blob sha256:[0-9a-f]{64}.*not a regular file/, [], {}, other));
  });
  const huge = image((d) => (d.rawIndex = Buffer.from(JSON.stringify({ ...d.index, pad: 'x'.repeat(5 << 20) }))));
  t.test('an index.json over 4 MiB', async (t) => rejects(t, huge, /index\.json: \d+ bytes is more than the 4194304 allowed/, [], {}, ['unencapsulate']));
});

t.test('a malformed config.config or Labels (was: read as a non-ostree image by image pull)', async (t) => {
  const str = image((d) => (d.config['config'] = 'x'));
  t.test('config.config a string', async (t) => rejects(t, str, /\.config: must be an object, got string/));
  const arr = image((d) => ((d.config['config'] as Record<string, unknown>)['Labels'] = ['ostree.final-diffid']));
  t.test('Labels an array', async (t) => rejects(t, arr, /\.config\.Labels: must be an object of strings/, [], {}, ['pull']));
  const num = image((d) => (((d.config['config'] as Record<string, unknown>)['Labels'] as Record<string, unknown>)['ostree.bootable'] = 1));
  t.test('a label that is not a string', async (t) => rejects(t, num, /\.config\.Labels\["ostree\.bootable"\]: must be a string/, [], {}, ['pull']));
});

/** A tar of `mib` MiB: a regular-file entry named `name` holding zeros. */
function zeroFileTar(name: string, mib: number): Buffer {
  const head = writeTar([{ name, type: '0', mode: 0o644, uid: 0, gid: 0, mtime: 0, linkname: '', data: Buffer.alloc(0), pax: [] }], { endMarker: false });
  const h = Buffer.from(head.subarray(head.length - 512));
  h.write(`${(mib << 20).toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  fixChecksum(h);
  return Buffer.concat([head.subarray(0, head.length - 512), h, Buffer.alloc((mib << 20) + 1024)]);
}

t.test('decompression bombs name maxLayerRatio (was: unbounded in image pull; "Unexpected EOF" for an object)', async (t) => {
  const cheap = ['--limit', 'layerRatioFloor=1M', '--limit', 'maxLayerRatio=20'];
  const zeros = image((d) => {
    d.layers[2]!.tar = Buffer.alloc(12 << 20);
    d.layers[2]!.dirty = true;
  });
  t.test('a chunk layer of zeros (gzip)', async (t) => rejects(t, zeros, /layer 2 .*exceeds limit maxLayerRatio \(\d+ > \d+; raise it/, cheap));
  const object = image((d) => {
    d.layers[1]!.tar = zeroFileTar(objectName('ab'.repeat(32), 'file'), 12);
    d.layers[1]!.dirty = true;
  });
  t.test('a content object of zeros streaming into libostree', async (t) => rejects(t, object, /exceeds limit maxLayerRatio/, cheap));
  t.test('OSTREE_OCI_LIMITS does the same as --limit', async (t) =>
    rejects(t, object, /exceeds limit maxLayerRatio/, [], { OSTREE_OCI_LIMITS: 'layerRatioFloor=1M,maxLayerRatio=20' }, ['unencapsulate']),
  );
  t.test('the library option wins over the environment', async (t) => {
    for (const op of ['unencapsulate', 'pull'] as const) {
      const repo = Repo.open(freshRepo());
      try {
        const limits = { layerRatioFloor: 1 << 20, maxLayerRatio: 20 };
        let err: unknown;
        try {
          await (op === 'unencapsulate' ? unencapsulate(repo, `oci:${zeros}`, { limits }) : pullImage(repo, `oci:${zeros}`, { limits }));
        } catch (e) {
          err = e;
        }
        t.ok(err instanceof LimitError && err.cap === 'maxLayerRatio', `${op}: LimitError naming maxLayerRatio (${String(err)})`);
      } finally {
        repo.close();
      }
    }
  });
  // The default floor (64 MiB) lets a valid image through whatever its ratio.
  const gz = zlib.gzipSync(Buffer.alloc(1 << 20));
  t.ok((1 << 20) / gz.length > 250, 'a MiB of zeros compresses past the default ratio');
});

t.test('each cap, at the image’s own value and one below', async (t) => {
  const shape = shapeOf(s.repo, s.commit, baseDraft, baseDraft.layers.map((l) => parseTar(l.tar)));
  const { treeDepth: depth, dirEntries: entries, pathLength: path, metadataSize: meta, xattrsSize: xattrs } = shape;
  const caps: Array<[string, number]> = [
    ['maxTreeDepth', depth],
    ['maxDirEntries', entries],
    ['maxPathLength', path],
    ['maxMetadataSize', meta],
    ['maxXattrsSize', xattrs],
  ];
  t.ok(depth >= 10 && entries > 5 && path > 250 && meta > 500 && xattrs > 10, `the sample has something to cap: ${JSON.stringify(caps)}`);
  // Through the library (both importers), and once through the CLI's --limit.
  const importOnce = async (op: Importer, limits: Record<string, number>): Promise<unknown> => {
    const path = freshRepo();
    const before = repoState(path);
    const repo = Repo.open(path);
    try {
      if (op === 'unencapsulate') await unencapsulate(repo, `oci:${base}`, { limits });
      else await pullImage(repo, `oci:${base}`, { limits });
      return null;
    } catch (e) {
      t.equal(repoState(path), before, `${op} ${JSON.stringify(limits)}: repository unchanged after the error`);
      return e;
    } finally {
      repo.close();
    }
  };
  for (const [k, [cap, actual]] of caps.entries()) {
    const op: Importer = k % 2 ? 'pull' : 'unencapsulate';
    t.equal(await importOnce(op, { [cap]: actual }), null, `${op} ${cap}=${actual} (exactly what the image needs): imports`);
    const err = await importOnce(op, { [cap]: actual - 1 });
    t.ok(err instanceof LimitError && err.cap === cap, `${op} ${cap}=${actual - 1}: LimitError naming ${cap}`);
    t.match(String((err as Error)?.message), new RegExp(`exceeds limit ${cap} \\(${actual} > ${actual - 1}; raise it with --limit ${cap}=N`), `${cap}: the message names the cap and both numbers`);
  }
  const bad = cli(['--limit', `maxTreeDepth=${depth - 1}`, 'unencapsulate', '--repo', freshRepo(), `oci:${base}`]);
  t.equal(bad.status, 1, 'CLI --limit maxTreeDepth: refused, exit status 1');
  t.match(bad.stderr, new RegExp(`^error: commit ${s.commit}: directory /\\S+ nesting depth: exceeds limit maxTreeDepth \\(${depth} > ${depth - 1}`), 'CLI: one line naming the directory and the cap');
});

t.test('limits: parsing and defaults', async (t) => {
  t.same(parseLimits('maxXattrsSize=1M, maxTreeDepth=12'), { maxXattrsSize: 1 << 20, maxTreeDepth: 12 });
  t.throws(() => parseLimits('bogus=1'), /unknown limit "bogus" \(known: maxLayerRatio/);
  t.throws(() => parseLimits('maxTreeDepth=-1'), /bad limit/);
  t.throws(() => parseLimits('maxTreeDepth=0'), /must be a positive integer/);
  t.throws(() => resolveLimits({ maxDirEntries: 1.5 }), /maxDirEntries must be a positive integer/);
  const saved = process.env['OSTREE_OCI_LIMITS'];
  process.env['OSTREE_OCI_LIMITS'] = 'maxTreeDepth=7';
  try {
    t.equal(resolveLimits().maxTreeDepth, 7, 'the environment overrides the default');
    t.equal(resolveLimits({ maxTreeDepth: 9 }).maxTreeDepth, 9, 'an explicit option overrides the environment');
  } finally {
    if (saved === undefined) delete process.env['OSTREE_OCI_LIMITS'];
    else process.env['OSTREE_OCI_LIMITS'] = saved;
  }
  t.equal(resolveLimits().maxMetadataSize, DEFAULT_LIMITS.maxMetadataSize);
  t.ok(new LimitError('maxTreeDepth', 1, 2, 'x') instanceof OstreeOciError);
  const r = cli(['--limit', 'nope=3', 'unencapsulate', '--repo', freshRepo(), `oci:${base}`]);
  t.equal(r.status, 2, 'an unknown --limit is a usage error (exit 2)');
  t.match(r.stderr, /--limit: unknown limit "nope"/);
  const help = cli(['--help']);
  t.match(help.stdout, /--limit <name=N>/, '--limit is in the help');
});
