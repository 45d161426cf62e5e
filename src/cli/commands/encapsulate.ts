/**
 * `ostree-oci encapsulate --repo R REV IMGREF [-l k=v]… [--compression gzip|zstd]
 * [--compression-fast] [--max-layers N] [--contentmeta FILE] [--cmd ARG]… [--json]`
 *
 * Writes the commit as an ostree container image (ostree-ext layout) and prints the manifest
 * digest (or a JSON summary).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { encapsulate, parseContentMeta, type EncapsulateOptions } from '../../container/index.js';
import { UsageError } from '../../errors.js';
import { Repo } from '../../ostree/repo.js';
import { endProgress, printJson, progress } from '../output.js';

interface Opts {
  repo: string;
  label: string[];
  compression: string;
  compressionFast?: boolean;
  maxLayers?: string;
  contentmeta?: string;
  cmd?: string[];
  copymeta: string[];
  copymetaOpt: string[];
  created?: string;
  tlsVerify: boolean;
  authfile?: string;
  json?: boolean;
  composefs?: boolean;
}

const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];

export function register(program: Command): void {
  program
    .command('encapsulate')
    .description('write an ostree commit as an ostree container image (ostree-ext format)')
    .requiredOption('--repo <path>', 'ostree repository')
    .argument('<rev>', 'ref or commit checksum')
    .argument('<imgref>', 'destination: oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://NAME[:TAG]')
    .option('-l, --label <key=value>', 'add a label (repeatable; not ostree.commit or ostree.final-diffid, which encapsulate sets)', collect, [])
    .option('--compression <alg>', 'layer compression: gzip or zstd', 'gzip')
    .option('--compression-fast', 'fastest compression level (gzip/zstd level 1)')
    .option('--max-layers <n>', 'split content into at most N chunk layers after the commit layer')
    .option('--contentmeta <file>', 'ostree-ext content metadata JSON (object → component layers; at most 64 unless --max-layers)')
    .option('--cmd <arg>', 'container Cmd, one argument per occurrence (default: commit ostree.container-cmd)', collect)
    .option('--copymeta <key>', 'copy a commit metadata string to a label (required)', collect, [])
    .option('--copymeta-opt <key>', 'copy a commit metadata string to a label if present', collect, [])
    .option('--created <time>', 'config "created", an RFC 3339 date-time such as 2024-01-02T03:04:05Z (default: the commit timestamp)')
    .option('--no-tls-verify', 'do not verify TLS for docker:// destinations')
    .option('--authfile <file>', 'registry credentials file')
    .option('--json', 'print a JSON summary')
    .option('--composefs', 'annotate the manifest with the composefs digests (containers.composefs-digest, and per layer), as `seal` would')
    .action(async (rev: string, imgref: string, opts: Opts) => {
      const labels: Record<string, string> = {};
      for (const l of opts.label) {
        const eq = l.indexOf('=');
        if (eq <= 0) throw new UsageError(`invalid label ${JSON.stringify(l)}: expected KEY=VALUE`);
        labels[l.slice(0, eq)] = l.slice(eq + 1);
      }
      if (opts.compression !== 'gzip' && opts.compression !== 'zstd') {
        throw new UsageError(`--compression must be gzip or zstd, not ${JSON.stringify(opts.compression)}`);
      }
      const e: EncapsulateOptions = {
        labels,
        compression: opts.compression,
        compressionFast: Boolean(opts.compressionFast),
        copyMeta: opts.copymeta,
        copyMetaOpt: opts.copymetaOpt,
        tlsVerify: opts.tlsVerify,
      };
      if (opts.maxLayers !== undefined) {
        const n = Number(opts.maxLayers);
        if (!/^\d+$/.test(opts.maxLayers) || n < 1) throw new UsageError(`--max-layers must be a positive integer, got ${JSON.stringify(opts.maxLayers)}`);
        e.maxLayers = n;
      }
      if (opts.contentmeta !== undefined) {
        let json: unknown;
        try {
          json = JSON.parse(readFileSync(opts.contentmeta, 'utf8'));
        } catch (err) {
          throw new UsageError(`--contentmeta ${opts.contentmeta}: ${(err as Error).message}`);
        }
        e.contentmeta = parseContentMeta(json, opts.contentmeta);
      }
      if (opts.cmd) e.cmd = opts.cmd;
      if (opts.composefs) e.composefs = true;
      if (opts.created !== undefined) e.created = opts.created;
      if (opts.authfile) e.authFile = opts.authfile;
      const tick = progress('encapsulate');
      let done = 0;
      e.onProgress = (p) => {
        if (p.state === 'finished') done++;
        tick(`${done}/${p.layers} layers (${p.state === 'started' ? 'writing' : 'wrote'} ${p.name})`);
      };
      const repo = Repo.open(opts.repo);
      try {
        const r = await encapsulate(repo, rev, imgref, e);
        endProgress();
        if (opts.json) printJson(r);
        else process.stdout.write(`${r.manifestDigest}\n`);
      } finally {
        endProgress();
        repo.close();
      }
    });
}
