/** `ostree-oci cfs fsck CFSREPO` and `ostree-oci cfs gc CFSREPO [--dry-run]`: composefs repository maintenance. */
import type { Command } from 'commander';
import { CfsRepo } from '../../cfs/repository.js';
import { fsckRepo, formatFsckReport } from '../../cfs/fsck.js';
import { gcRepo } from '../../cfs/gc.js';
import { endProgress, printJson, progress } from '../output.js';

export function register(program: Command): void {
  const cfs = program.command('cfs').description('composefs repository (composefs-rs layout) maintenance');

  cfs
    .command('fsck')
    .description('check a composefs repository: object digests equal their names, images and streams reference existing objects, refs resolve (exit 1 on any error)')
    .argument('<cfsrepo>', 'composefs repository')
    .option('--json', 'machine-readable report')
    .action(async (path: string, opts: { json?: boolean }) => {
      const repo = await CfsRepo.open(path);
      const show = progress('fsck');
      const report = await fsckRepo(repo, { onProgress: (phase, d, t) => show(`${phase} ${d}/${t}`) });
      endProgress();
      if (opts.json) printJson(report);
      else process.stdout.write(formatFsckReport(report));
      process.exitCode = report.ok ? 0 : 1;
    });

  cfs
    .command('gc')
    .description('remove objects no ref (images/refs, streams/refs) reaches, then dangling links and stale temporary files')
    .argument('<cfsrepo>', 'composefs repository')
    .option('--dry-run', 'only report what would be removed')
    .option('--json', 'machine-readable report')
    .action(async (path: string, opts: { dryRun?: boolean; json?: boolean }) => {
      const repo = await CfsRepo.open(path);
      const r = await gcRepo(repo, { dryRun: Boolean(opts.dryRun) });
      if (opts.json) printJson(r);
      else {
        const verb = r.dryRun ? 'would remove' : 'removed';
        process.stdout.write(
          `${verb} ${r.objectsRemoved} object(s) (${r.bytesRemoved} bytes), ${r.imagesRemoved} image link(s), ${r.streamsRemoved} stream link(s), ` +
            `${r.refsRemoved} dangling ref(s), ${r.tempFilesRemoved} stale temporary file(s); ${r.live} live object(s)\n`,
        );
      }
    });
}
