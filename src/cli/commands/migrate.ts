/**
 * `ostree-oci migrate`: an ostree commit (`--repo R REV`) or a sysroot deployment (`--sysroot DIR
 * [--deployment N | --booted]`) → a composefs repository (`--to CFSREPO`): objects, an EROFS image
 * under images/, `images/refs/NAME`, and with `--oci IMGREF` the encapsulated image stored as
 * splitstreams tagged `streams/refs/oci/TAG`. Prints a migration report.
 */
import type { Command } from 'commander';
import { UsageError } from '../../errors.js';
import { Repo } from '../../ostree/repo.js';
import { readPublicKeysFile } from '../../sign/ed25519.js';
import { formatMigrationReport, migrateCommit, type MigrateProgress } from '../../cfs/migrate.js';
import { bootedDeployment, deploymentByIndex, deploymentName, openSysroot } from '../../cfs/sysroot.js';
import { endProgress, printJson, progress } from '../output.js';

interface MigrateCliOptions {
  repo?: string;
  sysroot?: string;
  deployment?: string;
  booted?: boolean;
  to: string;
  name?: string;
  pubkeys?: string;
  oci?: string;
  ociTag?: string;
  compression?: 'gzip' | 'zstd';
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('migrate')
    .description(
      'migrate an ostree commit (--repo R REV) or deployment (--sysroot DIR [--deployment N|--booted]) into a composefs repository (--to CFSREPO): ' +
        'objects named by fs-verity digest, an EROFS image (files ≤ 64 bytes inline), images/refs/NAME; --oci also stores the encapsulated image as splitstreams',
    )
    .argument('[rev]', 'commit (ref or checksum), with --repo')
    .option('--repo <path>', 'ostree repository holding the commit')
    .option('--sysroot <dir>', 'ostree sysroot: migrate one of its deployments (commit read from DIR/ostree/repo)')
    .option('--deployment <n>', 'deployment index, as `ostree admin status` lists them (default 0)')
    .option('--booted', 'the deployment the running system booted (needs /run/ostree-booted and ostree= on the kernel command line)')
    .requiredOption('--to <cfsrepo>', 'composefs repository (created when missing)')
    .option('--name <name>', 'image ref name under images/refs/ (default: REV, or <os>/<checksum>.<serial> for a deployment)')
    .option('--pubkeys <file>', 'trusted ed25519 public keys: the commit signature must verify before migrating')
    .option('--oci <imgref>', 'also encapsulate the commit to this image reference (oci:DIR:TAG, oci-archive:, docker://) and store it as splitstreams')
    .option('--oci-tag <tag>', 'tag for streams/refs/oci/ (default: NAME)')
    .option('--compression <type>', 'layer compression for --oci: gzip or zstd', 'gzip')
    .option('--json', 'machine-readable report')
    .action(async (rev: string | undefined, opts: MigrateCliOptions) => {
      if (Boolean(opts.repo) === Boolean(opts.sysroot)) throw new UsageError('migrate needs exactly one of --repo R REV or --sysroot DIR');
      if (opts.repo && !rev) throw new UsageError('migrate --repo needs a REV (ref or checksum)');
      if (opts.sysroot && rev) throw new UsageError(`migrate --sysroot takes no REV (got "${rev}"); pick a deployment with --deployment N or --booted`);
      if (!opts.sysroot && (opts.deployment !== undefined || opts.booted)) throw new UsageError('--deployment and --booted need --sysroot');
      if (opts.deployment !== undefined && opts.booted) throw new UsageError('--deployment and --booted exclude each other');
      if (opts.compression !== 'gzip' && opts.compression !== 'zstd') throw new UsageError(`--compression must be gzip or zstd, got ${String(opts.compression)}`);
      if (opts.ociTag && !opts.oci) throw new UsageError('--oci-tag needs --oci');
      const pubkeys = opts.pubkeys ? readPublicKeysFile(opts.pubkeys) : undefined;

      let repoPath: string;
      let commitRev: string;
      let name: string;
      let source: Record<string, unknown> = {};
      if (opts.sysroot) {
        const s = openSysroot(opts.sysroot);
        let d;
        if (opts.booted) d = bootedDeployment(s);
        else {
          const text = opts.deployment ?? '0';
          if (!/^\d+$/.test(text)) throw new UsageError(`--deployment must be a non-negative integer, got "${text}"`);
          d = deploymentByIndex(s, Number(text));
        }
        repoPath = s.repoPath;
        commitRev = d.checksum;
        name = opts.name ?? deploymentName(d);
        source = { sysroot: s.path, deployment: { index: d.index, stateroot: d.stateroot, checksum: d.checksum, serial: d.serial, path: d.path } };
      } else {
        repoPath = opts.repo!;
        commitRev = rev!;
        name = opts.name ?? rev!;
      }

      const show = progress('migrate');
      const onProgress = (p: MigrateProgress): void => show(`${p.phase} ${p.done}/${p.total}`);
      const repo = Repo.open(repoPath);
      try {
        const report = await migrateCommit(repo, commitRev, opts.to, {
          name,
          ...(pubkeys ? { pubkeys } : {}),
          ...(opts.oci ? { oci: { imgref: opts.oci, tag: opts.ociTag ?? name, encapsulate: { compression: opts.compression } } } : {}),
          source,
          onProgress,
        });
        endProgress();
        if (opts.json) printJson(report);
        else process.stdout.write(formatMigrationReport(report));
      } finally {
        endProgress();
        repo.close();
      }
    });
}
