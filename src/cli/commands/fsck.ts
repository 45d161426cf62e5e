/** `ostree-oci fsck --repo R [REV…]`: re-checksum every reachable object in TypeScript. */
import type { Command } from 'commander';
import { Repo } from '../../ostree/repo.js';
import { verifyCommitObjects, type VerifyObjectsResult } from '../../ostree/verify-objects.js';
import { endProgress, printJson, progress } from '../output.js';

export function register(program: Command): void {
  program
    .command('fsck')
    .description('re-checksum every object reachable from commits (default: all refs) without trusting stored names')
    .requiredOption('--repo <path>', 'ostree repository')
    .argument('[revs...]', 'refs or checksums (default: every ref)')
    .option('--json', 'machine-readable output')
    .action(async (revs: string[], opts: { repo: string; json?: boolean }) => {
      const repo = Repo.open(opts.repo);
      try {
        const targets = revs.length ? revs : [...new Set(repo.listRefs().values())];
        const results: VerifyObjectsResult[] = [];
        for (const rev of targets) {
          const tick = progress(`fsck ${rev}`);
          results.push(await verifyCommitObjects(repo, rev, (d, n) => tick(`${d}/${n} objects`)));
          endProgress();
        }
        const bad = results.reduce((n, r) => n + r.problems.length, 0);
        if (opts.json) printJson(results);
        else {
          for (const r of results) {
            process.stdout.write(`${r.commit}: ${r.objects} objects (${r.files} files) verified, ${r.problems.length} problems\n`);
            for (const p of r.problems) process.stdout.write(`  ${p.type} ${p.checksum}: ${p.problem}\n`);
          }
        }
        if (bad) process.exitCode = 1;
      } finally {
        repo.close();
      }
    });
}
