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
import { commitComposefsDigest } from '../../composefs/from-commit.js';
import { formatReport, VERIFY_EXIT, type VerifyReport } from '../../verify/report.js';
import { checkDirectoryOption, printJson } from '../output.js';

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
    .description('verify a commit (--repo R REV): its ostree.composefs.digest.v0 against the recomputed digest, ed25519/GPG signatures, and with --composefs the signed-composefs check ostree-prepare-root does at boot')
    .argument('<target>', 'commit (with --repo), else an image reference (IMGREF): its composefs digest annotations are recomputed')
    .option('--repo <path>', 'ostree repository holding the commit')
    .option('--pubkeys <file>', 'trusted ed25519 public keys, one base64 key per line')
    .option('--gpg-homedir <dir>', 'verify GPG signatures with the keys of this GnuPG home (or directory of *.gpg keyrings)')
    .option('--composefs', 'offline ostree-prepare-root check for a signed composefs: commitmeta, a trusted ed25519 signature, ostree.composefs.digest.v0 present and equal to the recomputed digest')
    .option('--json', 'machine-readable output')
    .action(async (target: string, opts: VerifyOpts) => {
      if (opts.composefs && !opts.pubkeys) throw new UsageError('--composefs needs --pubkeys (the keys prepare-root would trust)');
      if (!opts.repo) {
        // No --repo: the target is an image reference; check its composefs digest annotations.
        if (opts.composefs || opts.pubkeys || opts.gpgHomedir) throw new UsageError('--composefs, --pubkeys and --gpg-homedir need --repo R (a commit)');
        const { verifyImageComposefs } = await import('../../composefs/image-digests.js');
        const r = await verifyImageComposefs(target);
        if (opts.json) printJson(r);
        else process.stdout.write(formatReport(r));
        process.exitCode = VERIFY_EXIT[r.outcome];
        return;
      }
      if (opts.gpgHomedir) checkDirectoryOption(opts.gpgHomedir, '--gpg-homedir');
      const pubkeys = opts.pubkeys ? readPublicKeysFile(opts.pubkeys) : undefined;
      const repo = Repo.open(opts.repo);
      let report: VerifyReport;
      try {
        report = await verifyCommit(repo, target, {
          ...(pubkeys ? { pubkeys } : {}),
          ...(opts.gpgHomedir ? { gpgKeyDir: opts.gpgHomedir } : {}),
          composefs: Boolean(opts.composefs),
          composefsDigest: commitComposefsDigest,
        });
      } finally {
        repo.close();
      }
      if (opts.json) printJson(report);
      else process.stdout.write(formatReport(report));
      process.exitCode = VERIFY_EXIT[report.outcome];
    });
}
