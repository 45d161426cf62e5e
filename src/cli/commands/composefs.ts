/**
 * `ostree-oci composefs …`: composefs images and dumpfiles.
 *
 *   composefs mkimage --from-dump DUMP IMAGE [--min-version N] [--max-version N] [--print-digest]
 *       dumpfile → EROFS image, byte-identical to `mkcomposefs --from-file` 1.0.8
 *   composefs dump IMAGE
 *       EROFS image → dumpfile on stdout (like `composefs-info dump`)
 *
 * The group is a commander sub-command; more sub-commands/options attach to it through
 * `composefsGroup(program)`.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import v8 from 'node:v8';
import type { Command } from 'commander';
import { UsageError } from '../../errors.js';
import { registerImageSources } from './composefs-sources.js';

interface MkimageOptions {
  fromDump: string;
  minVersion?: string;
  maxVersion?: string;
  printDigest?: boolean;
}

/** The `composefs` command group (created on first use). */
export function composefsGroup(program: Command): Command {
  const existing = program.commands.find((c) => c.name() === 'composefs');
  if (existing) return existing;
  return program
    .command('composefs')
    .description('composefs images (EROFS, byte-identical to mkcomposefs 1.0.8) and dumpfiles');
}

/**
 * mkcomposefs' parsing of --min-version/--max-version: strtol (leading blanks, a sign, clamped to
 * the long range), then truncated to int and used as uint32_t, so e.g. 4294967296 means 0.
 */
function parseVersion(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)$/.exec(v);
  if (!m) throw new UsageError(`invalid ${flag} ${JSON.stringify(v)}: expected an integer`);
  let n = BigInt(m[1]!);
  const LONG_MAX = (1n << 63n) - 1n;
  if (n > LONG_MAX) n = LONG_MAX;
  if (n < -LONG_MAX - 1n) n = -LONG_MAX - 1n;
  return Number(BigInt.asUintN(32, n));
}

async function openDump(path: string): Promise<NodeJS.ReadableStream | AsyncIterable<Buffer>> {
  if (path === '-') return process.stdin;
  try {
    const st = await stat(path);
    if (st.isDirectory()) throw new UsageError(`--from-dump ${path}: is a directory`, { path });
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`--from-dump ${path}: cannot read (${e.code ?? e.message})`, { path, code: e.code });
  }
  return createReadStream(path, { highWaterMark: 256 << 10 });
}

export function register(program: Command): void {
  const group = composefsGroup(program);
  registerImageSources(group); // composefs IMGREF | --dir PATH, composefs diff

  group
    .command('mkimage')
    .description('write a composefs EROFS image from a dumpfile (like `mkcomposefs --from-file`)')
    .requiredOption('--from-dump <DUMP>', 'composefs dumpfile to read (`-` for stdin); CFS_PARSE_STRICT=1 enables strict parsing')
    .argument('<IMAGE>', 'image file to write (atomically); `-` writes to stdout')
    .option('--min-version <N>', 'minimal composefs format version (default 0)')
    .option('--max-version <N>', 'maximal composefs format version (default 1; 0 if only --min-version is given)')
    .option('--print-digest', 'print the composefs digest (fs-verity digest of the image) on stdout')
    .action(async (image: string, opts: MkimageOptions, cmd: Command) => {
      // The group itself has a --print-digest (composefs IMGREF --print-digest); commander lets a
      // parent consume its own options wherever they appear, so look there too.
      if (!opts.printDigest && cmd.parent?.opts()['printDigest']) opts.printDigest = true;
      const minVersion = parseVersion('--min-version', opts.minVersion);
      const maxVersion = parseVersion('--max-version', opts.maxVersion);
      if (image === '-' && opts.printDigest) {
        throw new UsageError('--print-digest cannot be used when the image goes to stdout (IMAGE -)');
      }
      if (image === '-' && process.stdout.isTTY) throw new UsageError('stdout is a tty; refusing to write an image to it');
      // Building a large tree keeps nearly every allocation alive, so V8 keeps doubling the young
      // generation (to 2×16 MiB of semi-spaces) for nothing; keep it at its initial size. Only
      // the growth policy changes (read at each resize), in this CLI process only.
      v8.setFlagsFromString('--semi-space-growth-factor=1');
      const { parseDumpfile, buildErofs, checkImageOutput, writeImageFile, writeImageStream } = await import('../../composefs/index.js');
      if (image !== '-') await checkImageOutput(image);
      const { FsVerityHasher } = await import('../../composefs/fsverity.js');
      const input = await openDump(opts.fromDump);
      const source = opts.fromDump === '-' ? '<stdin>' : opts.fromDump;
      const tree = await parseDumpfile(input as AsyncIterable<Buffer>, { source });
      const erofsOpts: { minVersion?: number; maxVersion?: number } = {};
      if (minVersion !== undefined) erofsOpts.minVersion = minVersion;
      if (maxVersion !== undefined) erofsOpts.maxVersion = maxVersion;
      const img = buildErofs(tree, erofsOpts);
      const hasher = opts.printDigest ? new FsVerityHasher() : undefined;
      const observe = hasher ? (c: Buffer): void => void hasher.update(c) : undefined;
      if (image === '-') await writeImageStream(img, process.stdout, observe);
      else await writeImageFile(img, image, observe);
      if (hasher) process.stdout.write(`${hasher.digest().toString('hex')}\n`);
    });

  group
    .command('dump')
    .description('print the dumpfile of a composefs EROFS image (like `composefs-info dump`)')
    .argument('<IMAGE>', 'composefs EROFS image')
    .action(async (image: string) => {
      const { readErofsImage } = await import('../../composefs/erofs/reader.js');
      const { writeDumpfileTo } = await import('../../composefs/dumpfile/writer.js');
      try {
        await stat(image);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new UsageError(`${image}: cannot read (${e.code ?? e.message})`, { path: image, code: e.code });
      }
      const tree = await readErofsImage(image);
      await writeDumpfileTo(tree, process.stdout);
    });
}
