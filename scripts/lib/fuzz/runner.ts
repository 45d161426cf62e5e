/**
 * The image mutation fuzzer (issue 9). Builds a few valid base images (sample commits with
 * commitmeta, gzip and zstd, one or several layers), then for each case: clone a base, apply a
 * seeded mutation (mutations.ts), write it as an OCI layout and import it with `unencapsulate` and
 * `image pull` in a child process (worker.ts) into a fresh or an already-populated repository.
 *
 * Verdict of one import (anything else is a failure, reported with the seed that reproduces it):
 *  - success: the expectation allows it; the commit is the base commit; its commitmeta is exactly
 *    the `.commitmeta` the mutated commit layer carries, by this fuzzer's own tar parser (or none);
 *    `ostree fsck` (host ostree) is clean;
 *  - error: an OstreeOciError with a message (naming the cap when a cap was expected); the
 *    repository's refs/, objects/ and state/ are exactly as before;
 *  - never: a non-OstreeOciError exception, the worker dying, or running past the timeout.
 */
import { execFileSync } from 'node:child_process';
import { ForkedWorker } from './forked-worker.js';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encapsulate } from '../../../src/container/index.js';
import { serializeMetadata, parseDirTree, parseMetadata } from '../../../src/gvariant/ostree-types.js';
import type { Variant } from '../../../src/gvariant/codec.js';
import { Repo } from '../../../src/ostree/repo.js';
import { ostreeCommit, ostreeInit, writeSampleTree } from '../sample-tree.js';
import { cloneDraft, loadDraft, sha256, writeDraft, type ImageDraft } from './layout.js';
import { CLASSES, FUZZ_LIMITS, mutate, objectOf, type BaseInfo, type Mutation } from './mutations.js';
import { caseSeed, Rng } from './rng.js';
import { parseTar, type Entry } from './tar.js';
import type { WorkReply, WorkRequest } from './worker.js';

export type Op = 'unencapsulate' | 'pull';

export interface FuzzOptions {
  cases: number;
  seed: number;
  /** Work directory (created; removed at the end unless keep). */
  dir: string;
  ops?: Op[];
  classes?: string[];
  /** Run only case #k of the seed (reproduction). */
  only?: number;
  /** Start at case #k (cases k … cases-1, in one worker: reproduces state carried between cases). */
  from?: number;
  timeoutMs?: number;
  keep?: boolean;
  /** Fraction of imports into a repository that already holds the base commit. */
  warm?: number;
  /** Run `ostree fsck` after every error too (default: every 10th). */
  fsckAlways?: boolean;
  log?: (line: string) => void;
}

export interface CaseResult {
  index: number;
  caseSeed: number;
  base: string;
  mutation: Mutation;
  op: Op;
  warm: boolean;
  outcome: 'imported' | 'rejected';
  error?: string;
  failure?: string;
  ms: number;
}

export interface FuzzReport {
  seed: number;
  cases: number;
  imports: number;
  failures: CaseResult[];
  byClass: Record<string, { cases: number; imported: number; rejected: number; failures: number }>;
  bases: string[];
  ms: number;
  /** Where the time went (ms): base images, writing cases, repositories, imports, fsck. */
  phases: Record<string, number>;
}

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

// ---------------------------------------------------------------------------------------------
// Base images

const COMMITMETA = (): Buffer =>
  serializeMetadata([
    ['fuzz-detached-key', { type: 's', value: 'detached value' }],
    ['ostree.sign.ed25519', { type: 'aay', value: [Buffer.alloc(64, 0x5a)] }],
  ]);

interface SourceCommit {
  repo: string;
  commit: string;
}

function makeCommit(dir: string, name: string, shape: 'sample' | 'wide'): SourceCommit {
  const tree = join(dir, `${name}-tree`);
  const repo = join(dir, `${name}-repo`);
  writeSampleTree(tree, { containerLayout: true, bigFileMiB: 1, variant: shape === 'wide' ? '-wide' : '' });
  if (shape === 'wide') {
    // Many entries in one directory and a deeper chain, for the dirtree caps.
    const wide = join(tree, 'usr/share/wide');
    mkdirSync(wide, { recursive: true });
    for (let i = 0; i < 300; i++) execFileSync('sh', ['-c', `printf 'w${i}' > '${wide}/f${i}'`]);
    mkdirSync(join(tree, 'usr/lib/deeper/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20'), { recursive: true });
    execFileSync('sh', ['-c', `echo deep > '${tree}/usr/lib/deeper/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20/leaf'`]);
  }
  ostreeInit(repo, 'bare-user');
  const commit = ostreeCommit(repo, tree, {
    subject: `fuzz ${name}`,
    extraArgs: ['--bootable', '--add-metadata-string=version=42.0', `--add-metadata=ostree.container-cmd=['/usr/bin/hello']`],
  });
  const r = Repo.open(repo);
  try {
    r.writeCommitMeta(commit, COMMITMETA());
  } finally {
    r.close();
  }
  return { repo, commit };
}

/** What each import cap sees in a valid image: deepest tree, largest directory, longest path, … */
export function shapeOf(repoPath: string, commit: string, draft: ImageDraft, entries: Entry[][]): BaseInfo['shape'] {
  const repo = Repo.open(repoPath);
  let treeDepth = 0;
  let dirEntries = 0;
  let pathLength = 0;
  try {
    for (const w of repo.walk(commit)) {
      pathLength = Math.max(pathLength, Buffer.byteLength(w.path));
      if (w.kind === 'dir') {
        treeDepth = Math.max(treeDepth, w.path === '/' ? 0 : w.path.split('/').length - 1);
        dirEntries = Math.max(dirEntries, w.dirtree.files.length + w.dirtree.dirs.length);
      }
    }
  } finally {
    repo.close();
  }
  let metadataSize = 0;
  let xattrsSize = 0;
  for (const es of entries) {
    for (const e of es) {
      pathLength = Math.max(pathLength, Buffer.byteLength(e.name), Buffer.byteLength(e.linkname));
      const o = objectOf(e);
      if (o && ['commit', 'commitmeta', 'dirtree', 'dirmeta'].includes(o.ext)) metadataSize = Math.max(metadataSize, e.data.length);
      if (o && ['file-xattrs', 'file-xattrs-link', 'file.xattrs'].includes(o.ext) && e.type === '0') xattrsSize = Math.max(xattrsSize, e.data.length);
      let pax = 0;
      for (const [k, v] of e.pax) if (k.startsWith('SCHILY.xattr.')) pax += Buffer.byteLength(k) - 13 + v.length;
      if (o?.ext === 'file') xattrsSize = Math.max(xattrsSize, pax);
    }
  }
  // dirtrees in the image: maxDirEntries counts them too (identical to the walk for a valid image).
  for (const es of entries) for (const e of es) if (objectOf(e)?.ext === 'dirtree') {
    const t = parseDirTree(e.data);
    dirEntries = Math.max(dirEntries, t.files.length + t.dirs.length);
  }
  const layerRatio = Math.max(...draft.layers.map((l) => l.tar.length / l.blob.length));
  return { treeDepth, dirEntries, pathLength, metadataSize, xattrsSize, layerRatio };
}

async function buildBases(dir: string): Promise<BaseInfo[]> {
  const sample = makeCommit(dir, 'sample', 'sample');
  const wide = makeCommit(dir, 'wide', 'wide');
  const specs: Array<{ name: string; src: SourceCommit; compression: 'gzip' | 'zstd'; maxLayers?: number }> = [
    { name: 'sample-gzip-4', src: sample, compression: 'gzip', maxLayers: 4 },
    { name: 'sample-zstd-2', src: sample, compression: 'zstd', maxLayers: 2 },
    { name: 'sample-gzip-1', src: sample, compression: 'gzip' },
    { name: 'wide-zstd-3', src: wide, compression: 'zstd', maxLayers: 3 },
  ];
  const out: BaseInfo[] = [];
  for (const s of specs) {
    const img = join(dir, `base-${s.name}`);
    const repo = Repo.open(s.src.repo);
    try {
      await encapsulate(repo, s.src.commit, `oci:${img}`, { compression: s.compression, compressionFast: true, ...(s.maxLayers ? { maxLayers: s.maxLayers } : {}) });
    } finally {
      repo.close();
    }
    const draft = loadDraft(img);
    const entries = draft.layers.map((l) => parseTar(l.tar));
    out.push({
      name: s.name,
      draft,
      commit: s.src.commit,
      commitmeta: COMMITMETA(),
      entries,
      shape: shapeOf(s.src.repo, s.src.commit, draft, entries),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Checks

/** refs/, objects/ and state/ of a repository: path, size, mtime. */
function snapshot(repo: string): string {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const p = join(repo, rel);
    if (!existsSync(p)) return;
    for (const n of readdirSync(p).sort()) {
      const r = `${rel}/${n}`;
      const st = statSync(join(repo, r), { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(r);
      else out.push(`${r} ${st.size} ${st.mtimeMs}`);
    }
  };
  for (const d of ['refs', 'objects', 'state']) walk(d);
  return out.join('\n');
}

function ostreeFsck(repo: string): string | null {
  try {
    execFileSync('ostree', ['fsck', `--repo=${repo}`], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    return null;
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string; message: string };
    return `${x.stderr || ''}${x.stdout || ''}`.trim().split('\n').slice(-3).join(' | ') || x.message;
  }
}

/**
 * What is wrong with the commitmeta `gotHex` stored after importing an image carrying `image` into
 * a repository that stored `stored` (null: nothing): every stored key must remain, with its value
 * or, for `aay` (signatures), a superset of its entries; every key of the image must be there; a
 * key only the image has must have the image's value. Null when all holds.
 */
function mergedCommitmetaProblem(stored: Buffer | null, image: Buffer | null, gotHex: string | null): string | null {
  if (!stored) return (image ? image.toString('hex') : null) === gotHex ? null : 'commitmeta is not the image\'s (nothing was stored before)';
  if (gotHex === null) return 'the stored commitmeta was lost';
  const dict = (b: Buffer): Map<string, Variant> => new Map(parseMetadata(b, 'commitmeta'));
  const bytes = (v: Variant): string => serializeMetadata([['k', v]]).toString('hex');
  const entries = (v: Variant): string[] => (v.value as Buffer[]).map((e) => e.toString('hex'));
  const S = dict(stored);
  const G = dict(Buffer.from(gotHex, 'hex'));
  for (const [k, v] of S) {
    const g = G.get(k);
    if (!g) return `stored commitmeta key ${k} was lost`;
    if (v.type === 'aay' && g.type === 'aay') {
      if (!entries(v).every((e) => entries(g).includes(e))) return `stored entries of ${k} were lost`;
    } else if (bytes(v) !== bytes(g)) return `stored value of ${k} was replaced`;
  }
  for (const [k, v] of image ? dict(image) : new Map<string, Variant>()) {
    const g = G.get(k);
    if (!g) return `the image's commitmeta key ${k} is missing`;
    if (!S.has(k) && bytes(v) !== bytes(g)) return `the image's value of ${k} was not stored`;
  }
  return null;
}

/** The `.commitmeta` of `commit` in the mutated commit layer, by the fuzzer's own parser. */
function expectedCommitmeta(d: ImageDraft, commit: string): Buffer | null | 'unparseable' {
  let es: Entry[];
  try {
    es = parseTar(d.layers[0]!.tar);
  } catch {
    return 'unparseable';
  }
  const e = es.find((x) => {
    const o = objectOf(x);
    return o?.ext === 'commitmeta' && o.checksum === commit;
  });
  return e ? e.data : null;
}

function diffSnap(a: string, b: string): string {
  const A = new Set(a.split('\n'));
  const B = new Set(b.split('\n'));
  const gone = [...A].filter((x) => !B.has(x)).slice(0, 3);
  const added = [...B].filter((x) => !A.has(x)).slice(0, 3);
  return `removed/changed: ${gone.join('; ') || '-'}; added/changed: ${added.join('; ') || '-'}`;
}

// ---------------------------------------------------------------------------------------------

export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const t0 = Date.now();
  const log = o.log ?? (() => {});
  const ops = o.ops ?? ['unencapsulate', 'pull'];
  const timeoutMs = o.timeoutMs ?? 60_000;
  const warmP = o.warm ?? 0.25;
  rmSync(o.dir, { recursive: true, force: true });
  mkdirSync(o.dir, { recursive: true });
  const worker = new ForkedWorker<Omit<WorkRequest, 'id'>, WorkReply>(WORKER, 'fuzz worker');
  const report: FuzzReport = { seed: o.seed, cases: 0, imports: 0, failures: [], byClass: {}, bases: [], ms: 0, phases: {} };
  let tp = Date.now();
  const phase = (name: string): void => {
    const now = Date.now();
    report.phases[name] = (report.phases[name] ?? 0) + now - tp;
    tp = now;
  };
  try {
    log(`fuzz: building base images in ${o.dir}`);
    const bases = await buildBases(o.dir);
    report.bases = bases.map((b) => `${b.name} (${b.draft.layers.length} layers, commit ${b.commit.slice(0, 12)})`);
    // Warm repositories: the base commit already imported (by each op), copied per case.
    const warm = new Map<string, string>();
    for (const b of bases) {
      for (const op of ops) {
        const repo = join(o.dir, `warm-${b.name}-${op}`);
        const img = join(o.dir, `base-${b.name}`);
        const init = await worker.run({ op: 'init', repo }, timeoutMs);
        const r = await worker.run({ op, repo, imgref: `oci:${img}`, limits: '' }, timeoutMs);
        if (!('ok' in r) || !r.ok || !('ok' in init)) throw new Error(`fuzz: base image ${b.name} does not import with ${op}: ${JSON.stringify(r)}`);
        const bad = ostreeFsck(repo);
        if (bad) throw new Error(`fuzz: ostree fsck after importing base ${b.name}: ${bad}`);
        warm.set(`${b.name}/${op}`, repo);
      }
    }
    phase('bases');
    const limitsSpec = (l: Partial<Record<string, number>>): string =>
      Object.entries(l)
        .map(([k, v]) => `${k}=${v}`)
        .join(',');
    const first = o.from ?? 0;
    const caseIdx = o.only !== undefined ? [o.only] : Array.from({ length: Math.max(0, o.cases - first) }, (_, i) => first + i);
    for (const i of caseIdx) {
      const cs = caseSeed(o.seed, i);
      const rng = new Rng(cs);
      const base = rng.pick(bases);
      const d = cloneDraft(base.draft);
      const muts = mutate(rng, d, base, o.classes);
      const mut = muts[0]!;
      const caseDir = join(o.dir, `case-${i}`);
      rmSync(caseDir, { recursive: true, force: true });
      const img = join(caseDir, 'img');
      writeDraft(d, img);
      phase(`write:${mut.cls}`);
      report.cases++;
      const stats = (report.byClass[mut.cls] ??= { cases: 0, imported: 0, rejected: 0, failures: 0 });
      stats.cases++;
      for (const op of ops) {
        const isWarm = rng.chance(warmP);
        const repo = join(caseDir, `repo-${op}`);
        if (isWarm) execFileSync('cp', ['-a', warm.get(`${base.name}/${op}`)!, repo]);
        else {
          const r = await worker.run({ op: 'init', repo }, timeoutMs);
          if (!('ok' in r) || !r.ok) throw new Error(`fuzz: cannot create ${repo}: ${JSON.stringify(r)}`);
        }
        const before = snapshot(repo);
        phase('repo');
        const t1 = Date.now();
        const ref = op === 'unencapsulate' && rng.chance(0.5) ? 'fuzz/imported' : undefined;
        const reply = await worker.run({ op, repo, imgref: `oci:${img}`, limits: limitsSpec({ ...FUZZ_LIMITS, ...(mut.limits ?? {}) }), ...(ref ? { ref } : {}) }, timeoutMs);
        report.imports++;
        phase('import');
        const res: CaseResult = { index: i, caseSeed: cs, base: base.name, mutation: mut, op, warm: isWarm, outcome: 'rejected', ms: Date.now() - t1 };
        const expect = op === 'unencapsulate' ? (mut.unencapsulateExpect ?? mut.expect) : isWarm && mut.pullMayReuse ? 'any' : mut.expect;
        const fail = (why: string): void => {
          res.failure = why;
        };
        if ('hung' in reply) fail(`hang: no answer within ${timeoutMs} ms`);
        else if ('dead' in reply) fail(`crash: ${reply.dead}`);
        else if (!reply.ok) {
          const e = reply.error!;
          res.error = `${e.name}: ${e.message}`;
          if (!e.typed) fail(`untyped error ${e.name}: ${e.message}\n${e.stack ?? ''}`);
          else if (e.message.length < 12) fail(`error message names nothing: ${JSON.stringify(e.message)}`);
          else if (expect === 'ok') fail(`false reject of a no-op mutation: ${res.error}`);
          else if (mut.cap && !(e.cap === mut.cap || e.message.includes(mut.cap))) fail(`expected an error naming cap ${mut.cap}, got ${res.error}`);
          else {
            const after = snapshot(repo);
            if (after !== before) fail(`repository changed after an error: ${diffSnap(before, after)}`);
            else if (o.fsckAlways || i % 10 === 0) {
              const bad = ostreeFsck(repo);
              if (bad) fail(`ostree fsck after an error: ${bad}`);
            }
          }
        } else {
          res.outcome = 'imported';
          const commit = op === 'pull' ? reply.baseCommit : reply.commit;
          if (expect === 'fail') fail(`accepted a corrupt image (commit ${reply.commit})`);
          else if (op === 'pull' && mut.pullNonOstree && reply.baseCommit === null) {
            const bad = ostreeFsck(repo);
            if (bad) fail(`ostree fsck after storing a non-ostree image: ${bad}`);
          } else if (commit !== base.commit) fail(`imported commit ${commit}, the image's commit is ${base.commit}`);
          else if (op === 'pull' && (reply.derived ?? 0) > 0 && !mut.derived) fail(`pull stored ${reply.derived} derived layer(s) the mutation did not add`);
          else {
            const exp = expectedCommitmeta(d, base.commit);
            const got = reply.commitmeta ?? null;
            // A warm repository already stores the base commit with its commitmeta: the import
            // may add to it, never take anything away.
            const metaProblem = exp === 'unparseable' ? null : isWarm ? mergedCommitmetaProblem(base.commitmeta, exp, got) : null;
            if (exp === 'unparseable') fail('imported a commit layer the fuzzer cannot parse as tar');
            else if (isWarm && metaProblem) fail(metaProblem);
            else if (!isWarm && (exp ? exp.toString('hex') : null) !== got) fail(`commitmeta ${got === null ? 'absent' : `${got.length / 2} bytes`}, the image carries ${exp === null ? 'none' : `${exp.length} bytes`}`);
            else {
              const bad = ostreeFsck(repo);
              if (bad) fail(`ostree fsck after import: ${bad}`);
              else if (ref) {
                const refFile = join(repo, 'refs', 'heads', ref);
                const v = existsSync(refFile) ? readFileSync(refFile, 'utf8').trim() : null;
                if (v !== commit) fail(`ref ${ref} is ${v}, expected ${commit}`);
              }
            }
          }
        }
        phase('check');
        if (res.outcome === 'imported') stats.imported++;
        else stats.rejected++;
        if (res.failure) {
          stats.failures++;
          report.failures.push(res);
          log(
            `FAIL case ${i} (seed ${o.seed}, case seed ${cs}) ${op}${isWarm ? ' [warm repo]' : ''} on ${base.name}: ${mut.cls}: ${mut.detail}\n  → ${res.failure}\n  reproduce: npm run fuzz -- --seed ${o.seed} --case ${i}`,
          );
        }
      }
      if (!o.keep && !report.failures.some((f) => f.index === i)) rmSync(caseDir, { recursive: true, force: true });
      if ((i + 1) % 25 === 0) log(`fuzz: ${i + 1}/${o.cases} cases, ${report.failures.length} failure(s), ${Math.round((Date.now() - t0) / 1000)} s`);
    }
  } finally {
    worker.stop();
    report.ms = Date.now() - t0;
    if (!o.keep && report.failures.length === 0) rmSync(o.dir, { recursive: true, force: true });
  }
  return report;
}

export { CLASSES, sha256 };
