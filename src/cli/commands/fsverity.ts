/**
 * `ostree-oci fsverity FILE…`: print the fs-verity SHA-256 digest of each file like
 * `fsverity digest` (`sha256:<hex> FILE`), or a JSON array with --json.
 */
import type { Command } from 'commander';
import { FsVerityError, fsverityDigestFile } from '../../composefs/fsverity.js';
import { UsageError } from '../../errors.js';
import { printJson } from '../output.js';

interface FsverityOptions {
  json?: boolean;
  compact?: boolean;
}

export function register(program: Command): void {
  program
    .command('fsverity')
    .description('compute fs-verity digests (SHA-256, 4 KiB blocks, no salt) like `fsverity digest`')
    .argument('<file...>', 'regular files to measure (FIFOs, devices and directories are refused)')
    .option('--json', 'print a JSON array of {file, digest, algorithm}')
    .option('--compact', 'print only the hex digest, one per line (like `fsverity digest --compact`)')
    .action(async (files: string[], opts: FsverityOptions) => {
      const results: { file: string; digest: string; algorithm: string }[] = [];
      for (const file of files) {
        let digest: Buffer;
        try {
          digest = await fsverityDigestFile(file);
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          if (e.code === 'ENOENT' || e.code === 'EACCES' || e.code === 'EISDIR') {
            throw new UsageError(`fsverity: cannot read ${file}: ${e.code}`, { file, code: e.code });
          }
          if (err instanceof FsVerityError && err.details?.['notRegular']) throw new UsageError(`fsverity: ${file} is not a regular file`, { file });
          throw err;
        }
        const hex = digest.toString('hex');
        if (opts.json) results.push({ file, digest: hex, algorithm: 'sha256' });
        else process.stdout.write(opts.compact ? `${hex}\n` : `sha256:${hex} ${file}\n`);
      }
      if (opts.json) printJson(results);
    });
}
