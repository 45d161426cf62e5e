/**
 * `ostree-oci verify`: signatures and composefs digests of a commit (`--repo R REV`) or of an
 * image (`IMGREF`). Prints each check as match / mismatch (expected, got) / absent; the exit code
 * is 0 only when everything verified.
 */
import type { Command } from 'commander';
import { UsageError } from '../../errors.js';
import { Repo } from '../../ostree/repo.js';
import { readPublicKeysFile } from '../../sign/ed25519.js';
import { verifyCommit } from '../../verify/commit.js';
import { formatReport, type VerifyReport } from '../../verify/report.js';
import { printJson } from '../output.js';

interface VerifyOpts {
  repo?: string;
  pubkeys?: string;
  gpgHomedir?: string;
  composefs?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('verify')
    .description('verify a commit (--repo R REV): ed25519/GPG signatures and, with --composefs, the signed-composefs check ostree-prepare-root does at boot')
    .argument('<target>', 'commit (with --repo)')
    .option('--repo <path>', 'ostree repository holding the commit')
    .option('--pubkeys <file>', 'trusted ed25519 public keys, one base64 key per line')
    .option('--gpg-homedir <dir>', 'verify GPG signatures with the keys of this GnuPG home (or directory of *.gpg keyrings)')
    .option('--json', 'machine-readable output')
    .action(async (target: string, opts: VerifyOpts) => {
      if (!opts.repo) throw new UsageError('verify needs --repo R for a commit');
      if (!opts.pubkeys && !opts.gpgHomedir && !opts.composefs) {
        throw new UsageError('nothing to verify: give --pubkeys, --gpg-homedir or --composefs');
      }
      const pubkeys = opts.pubkeys ? readPublicKeysFile(opts.pubkeys) : undefined;
      const repo = Repo.open(opts.repo);
      let report: VerifyReport;
      try {
        report = await verifyCommit(repo, target, {
          ...(pubkeys ? { pubkeys } : {}),
          ...(opts.gpgHomedir ? { gpgKeyDir: opts.gpgHomedir } : {}),
        });
      } finally {
        repo.close();
      }
      if (opts.json) printJson(report);
      else process.stdout.write(formatReport(report));
      if (!report.ok) process.exitCode = 1;
    });
}
