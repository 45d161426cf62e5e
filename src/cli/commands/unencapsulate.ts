/**
 * `ostree-oci unencapsulate --repo R IMGREF [--ref NAME] [--verify-commit CHECKSUM]
 * [--require-commitmeta] [--json]`
 *
 * Imports the ostree commit of an ostree container image, with its detached metadata, verifying
 * every object; prints the commit checksum (or a JSON summary).
 */
import type { Command } from 'commander';
import { unencapsulate, type UnencapsulateOptions } from '../../container/index.js';
import { UsageError } from '../../errors.js';
import { Repo } from '../../ostree/repo.js';
import { endProgress, printJson, progress } from '../output.js';

interface Opts {
  repo: string;
  ref?: string;
  verifyCommit?: string;
  requireCommitmeta?: boolean;
  tlsVerify: boolean;
  authfile?: string;
  json?: boolean;
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

export function register(program: Command): void {
  program
    .command('unencapsulate')
    .description('import the ostree commit (and its detached metadata) from an ostree container image')
    .requiredOption('--repo <path>', 'ostree repository')
    .argument('<imgref>', 'source: oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://NAME[:TAG|@DIGEST]')
    .option('--ref <name>', 'set this ref to the imported commit')
    .option('--verify-commit <checksum>', 'fail unless the image holds this commit')
    .option('--require-commitmeta', 'fail unless the image carries detached metadata (signatures)')
    .option('--no-tls-verify', 'do not verify TLS for docker:// sources')
    .option('--authfile <file>', 'registry credentials file')
    .option('--json', 'print a JSON summary')
    .action(async (imgref: string, opts: Opts) => {
      if (opts.verifyCommit !== undefined && !/^[0-9a-f]{64}$/.test(opts.verifyCommit)) {
        throw new UsageError(`--verify-commit needs a full 64-character lowercase hex checksum, got ${JSON.stringify(opts.verifyCommit)}`);
      }
      const u: UnencapsulateOptions = { tlsVerify: opts.tlsVerify };
      if (opts.ref !== undefined) u.ref = opts.ref;
      if (opts.verifyCommit) u.verifyCommit = opts.verifyCommit;
      if (opts.requireCommitmeta) u.requireCommitmeta = true;
      if (opts.authfile) u.authFile = opts.authfile;
      const tick = progress('unencapsulate');
      u.onProgress = (p) => tick(`layer ${p.layer + 1}/${p.layers}: ${p.objects} objects, ${mib(p.contentBytes)} of content`);
      const repo = Repo.open(opts.repo);
      try {
        const r = await unencapsulate(repo, imgref, u);
        endProgress();
        if (opts.json) printJson(r);
        else {
          for (const n of r.notes ?? []) process.stderr.write(`note: ${n}\n`);
          process.stdout.write(`${r.commit}\n`);
        }
      } finally {
        endProgress();
        repo.close();
      }
    });
}
