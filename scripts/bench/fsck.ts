/**
 * Re-checksum every object of a commit in TypeScript (`ostree-oci fsck`) vs libostree's C
 * `ostree fsck` on the same bare-user repository.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { measure, type BenchModule } from './lib.js';
import { ostreeCommit, ostreeInit, writeSyntheticTree } from '../lib/sample-tree.js';

const bench: BenchModule = {
  title: 'content checksum of every object vs ostree fsck',
  async run(ctx) {
    const cache = join(ctx.root, '.cache', 'bench-fsck');
    const repo = join(cache, 'repo');
    if (!existsSync(join(cache, '.ready'))) {
      rmSync(cache, { recursive: true, force: true });
      mkdirSync(cache, { recursive: true });
      writeSyntheticTree(join(cache, 'tree'), 8000, 400);
      ostreeInit(repo, 'bare-user');
      ostreeCommit(repo, join(cache, 'tree'));
      rmSync(join(cache, 'tree'), { recursive: true, force: true });
      mkdirSync(join(cache, '.ready'));
    }
    const ours = await measure(process.execPath, [ctx.cli, 'fsck', '--repo', repo, 'main'], {}, 2);
    const anchor = await measure('ostree', ['fsck', `--repo=${repo}`], {}, 2);
    return [{ work: 'fsck 8000 files / 400 MiB (bare-user)', ours, anchorTool: 'ostree fsck', anchor }];
  },
};
export default bench;
