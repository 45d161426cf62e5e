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
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureBookwormRepo, ensureBookwormTar } from '../lib/bookworm-rootfs.js';
import { measure, type BenchContext, type BenchModule, type BenchRow } from './lib.js';

const REPEAT = 3;

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
    const unAnchor = await measure(
      `rm -rf ${q(dstC)} && ostree init --repo=${q(dstC)} --mode=bare-user && ostree commit --repo=${q(dstC)} --branch=bookworm --tree=tar=${q(rootfsTar)} >/dev/null`,
      [],
      { shell: true },
      REPEAT,
    );
    // The import must be complete and verified, or the numbers mean nothing.
    execFileSync('ostree', ['fsck', `--repo=${dst}`], { stdio: 'ignore' });
    rows.push({
      work: 'unencapsulate bookworm → fresh bare-user repo',
      ours: unOurs,
      anchorTool: 'ostree commit --tree=tar=',
      anchor: unAnchor,
      goal: 'time ≤ 0.7×, RSS ≤ 256 MiB',
    });
    return rows;
  },
};

export default mod;
