/**
 * encapsulate / unencapsulate on a real OS tree: Debian bookworm minbase (debootstrap, cached by
 * scripts/lib/bookworm-rootfs.ts, committed once into a bare-user repo).
 *
 *  - encapsulate to `oci-archive:` with zstd, against `ostree export | zstd -3` (the same commit
 *    as one plain tar stream, compressed the same way). Goal: time ≤ 1.0×, RSS ≤ 256 MiB.
 *  - unencapsulate that image into a fresh bare-user repo, against `ostree commit
 *    --tree=tar=ROOTFS.tar` of the same rootfs into a fresh bare-user repo. Goal: time ≤ 0.7×,
 *    RSS ≤ 256 MiB.
 *
 * Each side is the best of 3 runs, measured the same way (GNU time, wall seconds and peak RSS of
 * the whole process tree).
 *
 * A third row is the hashing floor of unencapsulate (see sha256Throughput): the issue requires
 * four SHA-256 passes — the layer blob against its descriptor, the uncompressed tar against its
 * diffid, every object re-checksummed in TypeScript and again by libostree's verifying write —
 * where `ostree commit` hashes the content once. The floor counts only the bytes that certainly
 * pass through them (blob bytes, plus three times the commit's unique content bytes: the tar
 * holds at least those) at the all-core throughput measured in this run, so it is a lower bound
 * for any implementation that keeps the checks.
 *
 * A fourth row is the write floor of unencapsulate: the commit's objects written into a fresh
 * bare-user repository through libostree's verifying writes (`ostree_repo_write_content` with the
 * expected checksum, several at once on libuv threads, as the importer does; metadata with
 * `write_metadata`) straight from memory — no layer, no tar, no content hashed in JavaScript. The issue
 * requires these writes, so no importer can be faster than this row.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../../src/oci/image.js';
import { ObjectType, Repo } from '../../src/ostree/repo.js';
import { ensureBookwormRepo, ensureBookwormTar } from '../lib/bookworm-rootfs.js';
import { measure, sha256Throughput, type BenchContext, type BenchModule, type BenchRow, type Measurement } from './lib.js';

const REPEAT = 3;
/** Concurrent writes in the write floor: more than the importer's 2, measured fastest here. */
const WRITE_FLOOR_PARALLEL = 8;

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

const mod: BenchModule = {
  title: 'encapsulate / unencapsulate (Debian bookworm minbase)',
  async run(ctx: BenchContext): Promise<BenchRow[]> {
    const log = (m: string): void => void process.stderr.write(`  ${m}\n`);
    const { repo, commit } = ensureBookwormRepo('bare-user', ctx.root, log);
    const rootfsTar = ensureBookwormTar(ctx.root, log);
    const s = ctx.scratch;
    const node = process.execPath;
    const rows: BenchRow[] = [];

    const img = join(s, 'bookworm.oci.tar');
    const ours = await measure(node, [ctx.cli, 'encapsulate', '--repo', repo, commit, `oci-archive:${img}`, '--compression', 'zstd'], {}, REPEAT);
    const anchor = await measure(`ostree export --repo=${q(repo)} ${commit} | zstd -3 -q -f -o ${q(join(s, 'export.tar.zst'))}`, [], { shell: true }, REPEAT);
    rows.push({
      work: 'encapsulate bookworm → oci-archive (zstd)',
      ours,
      anchorTool: 'ostree export | zstd -3',
      anchor,
      goal: 'time ≤ 1.0×, RSS ≤ 256 MiB',
    });

    const dst = join(s, 'dst-ours');
    const dstC = join(s, 'dst-ostree');
    const unOurs = await measure(
      `rm -rf ${q(dst)} && ostree init --repo=${q(dst)} --mode=bare-user && ${q(node)} ${q(ctx.cli)} unencapsulate --repo ${q(dst)} oci-archive:${q(img)} --verify-commit ${commit}`,
      [],
      { shell: true },
      REPEAT,
    );
    const ostreeCommit = `rm -rf ${q(dstC)} && ostree init --repo=${q(dstC)} --mode=bare-user && ostree commit --repo=${q(dstC)} --branch=bookworm --tree=tar=${q(rootfsTar)} >/dev/null`;
    const unAnchor = await measure(ostreeCommit, [], { shell: true }, REPEAT);
    // The import must be complete and verified, or the numbers mean nothing.
    execFileSync('ostree', ['fsck', `--repo=${dst}`], { stdio: 'ignore' });
    rows.push({
      work: 'unencapsulate bookworm → fresh bare-user repo',
      ours: unOurs,
      anchorTool: 'ostree commit --tree=tar=',
      anchor: unAnchor,
      goal: 'time ≤ 0.7×, RSS ≤ 256 MiB',
    });

    const floor = await unencapsulateHashFloor(repo, commit, img);
    const mib = (n: number): string => (n / 2 ** 20).toFixed(0);
    rows.push({
      work: `unencapsulate: SHA-256 floor alone (${mib(floor.bytes)} MiB at ${mib(floor.throughput)} MiB/s, all cores)`,
      ours: { seconds: floor.bytes / floor.throughput, peakRssMiB: 0 },
      anchorTool: 'ostree commit --tree=tar=',
      anchor: unAnchor,
      goal: 'lower bound: above 0.7× the goal is out of reach',
    });

    const writes = await libostreeWriteFloor(repo, commit, join(s, 'dst-writes'), () => measure(ostreeCommit, [], { shell: true }));
    rows.push({
      work: `unencapsulate: libostree verifying writes alone (${writes.objects} objects, ${mib(writes.bytes)} MiB from memory)`,
      ours: { seconds: writes.seconds, peakRssMiB: 0 },
      anchorTool: 'ostree commit --tree=tar= (interleaved)',
      anchor: writes.anchor,
      goal: 'lower bound: above 0.7× the goal is out of reach',
    });
    return rows;
  },
};

/**
 * Best of REPEAT: every object of `commit` written into a fresh bare-user repository at `dst`
 * through libostree's verifying writes, from memory (see the module comment). Each run is followed
 * by a run of the anchor, so that both see the same machine load (this host's disk and steal time
 * vary by 2× within minutes); the anchor's best is returned with it.
 */
async function libostreeWriteFloor(
  repoPath: string,
  commit: string,
  dst: string,
  anchorRun: () => Promise<Measurement>,
): Promise<{ seconds: number; objects: number; bytes: number; anchor: Measurement }> {
  const source = Repo.open(repoPath);
  const content: Array<[string, Buffer]> = [];
  const metadata: Array<[ObjectType, string, Buffer]> = [];
  try {
    for (const o of source.reachableObjects(commit)) {
      if (o.type !== ObjectType.FILE) {
        metadata.push([o.type, o.checksum, source.loadMetadataBytes(o.type, o.checksum)]);
        continue;
      }
      // The canonical content stream (header + payload) is what write_content takes.
      const { stream, size } = source.openObjectStream(ObjectType.FILE, o.checksum);
      try {
        const bytes = Buffer.allocUnsafe(size);
        if (stream.read(bytes) !== size) throw new Error(`write floor: short read of ${o.checksum}`);
        content.push([o.checksum, bytes]);
      } finally {
        stream.close();
      }
    }
  } finally {
    source.close();
  }
  let best = Infinity;
  let anchor: Measurement | undefined;
  for (let i = 0; i < REPEAT; i++) {
    rmSync(dst, { recursive: true, force: true });
    execFileSync('ostree', ['init', `--repo=${dst}`, '--mode=bare-user']);
    const start = performance.now();
    const repo = Repo.open(dst);
    try {
      await repo.transaction(async (r) => {
        const inflight = new Set<Promise<void>>();
        for (const [checksum, bytes] of content) {
          while (inflight.size >= WRITE_FLOOR_PARALLEL) await Promise.race(inflight);
          const p: Promise<void> = r.native
            .writeContentInBackground(checksum, bytes)
            .then((stored) => {
              if (stored !== checksum) throw new Error(`write floor: ${checksum} stored as ${stored}`);
            })
            .finally(() => inflight.delete(p));
          inflight.add(p);
        }
        await Promise.all(inflight);
        for (const [type, checksum, bytes] of metadata) r.writeMetadata(type, checksum, bytes);
      });
    } finally {
      repo.close();
    }
    best = Math.min(best, (performance.now() - start) / 1000);
    const a = await anchorRun();
    if (!anchor || a.seconds < anchor.seconds) anchor = a;
  }
  execFileSync('ostree', ['fsck', `--repo=${dst}`], { stdio: 'ignore' });
  rmSync(dst, { recursive: true, force: true });
  return { seconds: best, objects: content.length + metadata.length, bytes: content.reduce((n, [, b]) => n + b.length, 0), anchor: anchor! };
}

/** Bytes the required hashes certainly read during unencapsulate of `img`, and the throughput. */
async function unencapsulateHashFloor(repoPath: string, commit: string, img: string): Promise<{ bytes: number; throughput: number }> {
  const image = await openImage(`oci-archive:${img}`);
  let blobBytes = 0;
  try {
    for (const l of image.layers) blobBytes += l.size;
  } finally {
    await image.close();
  }
  const repo = Repo.open(repoPath);
  let contentBytes = 0;
  try {
    const seen = new Set<string>();
    for (const e of repo.walk(commit)) {
      if (e.kind !== 'file' || seen.has(e.checksum)) continue;
      seen.add(e.checksum);
      const p = repo.loosePayloadPath(e.checksum);
      if (p) contentBytes += statSync(p).size;
    }
  } finally {
    repo.close();
  }
  return { bytes: blobBytes + 3 * contentBytes, throughput: await sha256Throughput() };
}

export default mod;
