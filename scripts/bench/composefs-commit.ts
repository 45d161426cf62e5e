/**
 * Commit → composefs digest (`ostree.composefs.digest.v0`, libostree's rules: fs-verity of every
 * file, EROFS image, fs-verity of the image) on the Debian bookworm minbase commit, against the C
 * `mkcomposefs --print-digest-only` on a checkout of the same commit (the oracle's binary, run
 * through scripts/oracle.sh). Both read every file's bytes and build the same kind of image.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBookwormRepo } from '../lib/bookworm-rootfs.js';
import { measure, type BenchModule } from './lib.js';

const bench: BenchModule = {
  title: 'commit → composefs digest vs mkcomposefs --print-digest-only on the checkout',
  async run(ctx) {
    const { repo, commit } = ensureBookwormRepo('bare-user', ctx.root);
    const oracle = execFileSync(join(ctx.root, 'scripts', 'oracle.sh'), ['path'], { encoding: 'utf8' }).trim();
    // The checkout lives inside the chroot so mkcomposefs can read it without bind mounts.
    const checkout = join(oracle, 'var', 'tmp', `bookworm-${commit.slice(0, 12)}`);
    if (!existsSync(checkout)) execFileSync('ostree', ['checkout', `--repo=${repo}`, '--force-copy', commit, checkout]);
    const ours = await measure(process.execPath, [ctx.cli, 'composefs', '--repo', repo, commit, '--print-digest'], {}, 2);
    // Through oracle.sh (a private mount namespace with /proc, which mkcomposefs needs): ~10 ms extra.
    const anchor = await measure(join(ctx.root, 'scripts', 'oracle.sh'), ['run', 'mkcomposefs', '--print-digest-only', `/var/tmp/bookworm-${commit.slice(0, 12)}`], {}, 2);
    return [{ work: 'commit → composefs digest (bookworm minbase, bare-user)', ours, anchorTool: 'mkcomposefs --print-digest-only', anchor, goal: 'time ≤ 1.0×' }];
  },
};
export default bench;
