/** `ostree-oci roundtrip --repo R REV --pubkeys FILE [--via IMGREF]` */
import type { Command } from 'commander';
import { Repo } from '../../ostree/repo.js';
import { readPublicKeysFile } from '../../sign/ed25519.js';
import { roundtrip, type RoundtripStep } from '../../verify/roundtrip.js';
import { UsageError } from '../../errors.js';
import { checkDirectoryOption, printJson } from '../output.js';

interface Opts {
  repo: string;
  pubkeys?: string;
  gpgHomedir?: string;
  via?: string;
  tlsVerify: boolean;
  compression?: string;
  keep?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('roundtrip')
    .description('prove signed content survives: encapsulate → (via IMGREF) → unencapsulate into a fresh repo → compare bytes → verify signatures and composefs digest')
    .requiredOption('--repo <path>', 'ostree repository')
    .argument('<rev>', 'commit to send around')
    .option('--pubkeys <file>', 'trusted ed25519 public keys (one base64 key per line)')
    .option('--gpg-homedir <dir>', 'also verify GPG signatures with this keyring')
    .option('--via <imgref>', 'image reference to go through, e.g. docker://127.0.0.1:5000/os:test (default: a temporary oci-archive)')
    .option('--no-tls-verify', 'talk to the registry without TLS verification (loopback registries)')
    .option('--compression <algo>', 'gzip or zstd')
    .option('--keep', 'keep the temporary repository and image')
    .option('--json', 'machine-readable output')
    .action(async (rev: string, opts: Opts) => {
      if (opts.compression && opts.compression !== 'gzip' && opts.compression !== 'zstd') {
        throw new UsageError(`--compression must be gzip or zstd, not ${opts.compression}`);
      }
      // The proof is that the signatures still verify: without keys to check them with, the
      // roundtrip could only end "verify absent".
      if (!opts.pubkeys && !opts.gpgHomedir) throw new UsageError('roundtrip needs --pubkeys FILE or --gpg-homedir DIR: the keys its signatures are verified with');
      if (opts.gpgHomedir) checkDirectoryOption(opts.gpgHomedir, '--gpg-homedir');
      const pubkeys = opts.pubkeys ? readPublicKeysFile(opts.pubkeys) : undefined;
      const repo = Repo.open(opts.repo);
      const live = !opts.json && process.stdout.isTTY;
      try {
        const r = await roundtrip(repo, rev, {
          ...(pubkeys ? { pubkeys } : {}),
          ...(opts.gpgHomedir ? { gpgKeyDir: opts.gpgHomedir } : {}),
          ...(opts.via ? { via: opts.via } : {}),
          ...(opts.tlsVerify === false ? { tlsVerify: false } : {}),
          ...(opts.compression ? { compression: opts.compression as 'gzip' | 'zstd' } : {}),
          ...(opts.keep ? { keep: true } : {}),
          ...(live ? { onStep: (s: RoundtripStep) => process.stderr.write(`  ${s.name}: ${s.status}\n`) } : {}),
        });
        if (opts.json) printJson(r);
        else process.stdout.write(formatTable(r.commit, r.image, r.steps, r.ok));
        if (!r.ok) process.exitCode = 1;
      } finally {
        repo.close();
      }
    });
}

function formatTable(commit: string, image: string, steps: RoundtripStep[], ok: boolean): string {
  const w = Math.max(...steps.map((s) => s.name.length));
  const lines = [`roundtrip of ${commit} via ${image}`, `  ${'step'.padEnd(w)}  result  time    detail`];
  for (const s of steps) {
    const status = s.status === 'pass' ? 'ok' : s.status === 'fail' ? 'FAILED' : 'absent';
    lines.push(`  ${s.name.padEnd(w)}  ${status.padEnd(6)}  ${s.seconds.toFixed(2).padStart(5)}s  ${s.detail}`);
    if (s.expected || s.got) lines.push(`  ${''.padEnd(w)}                  expected ${s.expected ?? '-'}, got ${s.got ?? '-'}`);
  }
  lines.push(ok ? 'result: signed content survived the roundtrip' : 'result: roundtrip FAILED');
  return `${lines.join('\n')}\n`;
}
