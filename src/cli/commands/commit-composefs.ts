/** `ostree-oci commit-composefs --repo R REV -b BRANCH` */
import type { Command } from 'commander';
import { Repo } from '../../ostree/repo.js';
import { commitWithComposefsDigest } from '../../composefs/commit-metadata.js';
import { printJson } from '../output.js';

export function register(program: Command): void {
  program
    .command('commit-composefs')
    .description('write a new commit with the same tree whose metadata gains ostree.composefs.digest.v0 (like ostree commit --generate-composefs-metadata), ready to be signed')
    .requiredOption('--repo <path>', 'ostree repository')
    .requiredOption('-b, --branch <ref>', 'branch to point at the new commit')
    .argument('<rev>', 'source commit (ref or checksum)')
    .option('--json', 'machine-readable output')
    .action(async (rev: string, opts: { repo: string; branch: string; json?: boolean }) => {
      const repo = Repo.open(opts.repo);
      try {
        const r = await commitWithComposefsDigest(repo, rev, opts.branch);
        if (opts.json) printJson(r);
        else process.stdout.write(`${r.commit}\n`);
      } finally {
        repo.close();
      }
    });
}
