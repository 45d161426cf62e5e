#!/usr/bin/env node
/**
 * ostree-oci CLI: a thin shell over the library. Each command lives in ./commands/<name>.ts and
 * exports `register(program)`; add new commands to COMMANDS below.
 */
import { Command, CommanderError } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderError } from './output.js';
import { installSignalCleanup, runInterruptCleanup } from '../cleanup.js';
import { LIMITS_ENV, parseLimits } from '../limits.js';
interface CommandModule {
  register(program: Command): void;
}

/**
 * Every command: the top-level names a module registers, and how to load it. Only the module of
 * the command being run is imported (all of them for --help or an unknown name), so a command
 * does not pay for the libraries of the others (libostree via koffi, zstd, …) in time and memory.
 */
const COMMANDS: Array<[names: string[], load: () => Promise<CommandModule>]> = [
  [['show'], () => import('./commands/show.js')],
  [['fsck'], () => import('./commands/fsck.js')],
  [['keygen', 'sign'], () => import('./commands/sign.js')],
  [['verify'], () => import('./commands/verify.js')],
  [['commit-composefs'], () => import('./commands/commit-composefs.js')],
  [['roundtrip'], () => import('./commands/roundtrip.js')],
  [['fsverity'], () => import('./commands/fsverity.js')],
  [['encapsulate'], () => import('./commands/encapsulate.js')],
  [['unencapsulate'], () => import('./commands/unencapsulate.js')],
  [['composefs'], () => import('./commands/composefs.js')],
  [['migrate'], () => import('./commands/migrate.js')],
  [['cfs'], () => import('./commands/cfs.js')],
  [['image'], () => import('./commands/image.js')],
  [['seal'], () => import('./commands/seal.js')],
];

/** The first argument that is not a global option: the command name, if any. */
function commandName(argv: string[]): string | undefined {
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--limit') i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

/** This package's version, from the package.json above this file (src/cli or dist/src/cli). */
function packageVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const p = join(dir, 'package.json');
    if (!existsSync(p)) continue;
    const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'ostree-oci' && pkg.version) return pkg.version;
  }
  return 'unknown';
}

export async function buildProgram(argv: string[] = process.argv): Promise<Command> {
  const program = new Command();
  program
    .name('ostree-oci')
    .description('Move ostree commits to and from OCI images and composefs, keeping signatures intact')
    .version(packageVersion(), '-V, --version', 'print the version of ostree-oci')
    .option('--verbose', 'show error details')
    .option(
      '--limit <name=N>',
      'raise or lower a cap on hostile input (repeatable; e.g. maxLayerRatio=1000, maxXattrsSize=1M; see README "Limits")',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .showHelpAfterError()
    .exitOverride();
  // --limit goes to the library through OSTREE_OCI_LIMITS (after any limits already there).
  program.hook('preAction', () => {
    const given = program.opts()['limit'] as string[] | undefined;
    if (!given?.length) return;
    for (const v of given) parseLimits(v, '--limit');
    process.env[LIMITS_ENV] = [process.env[LIMITS_ENV], ...given].filter(Boolean).join(',');
  });
  const name = commandName(argv);
  const wanted = COMMANDS.filter(([names]) => name !== undefined && names.includes(name));
  // `--version` alone needs no command module.
  const versionOnly = name === undefined && argv.slice(2).some((a) => a === '--version' || a === '-V');
  for (const [, load] of wanted.length || versionOnly ? wanted : COMMANDS) (await load()).register(program);
  return program;
}

/** Exit status of a process killed by SIGPIPE, as `cat big | head -1` leaves for cat. */
const EXIT_SIGPIPE = 128 + 13;
const isEpipe = (e: unknown): boolean => (e as NodeJS.ErrnoException | undefined)?.code === 'EPIPE';

async function main(argv: string[]): Promise<number> {
  // Ctrl-C / kill: remove temporaries and half-written outputs before exiting (src/cleanup.ts).
  installSignalCleanup();
  // The reader of our stdout went away (`… | head -1`): stop quietly, like any Unix tool killed
  // by SIGPIPE, instead of reporting "error: write EPIPE".
  process.stdout.on('error', (e) => {
    if (!isEpipe(e)) return;
    runInterruptCleanup(); // what is half-written goes, as on a signal
    process.exit(EXIT_SIGPIPE);
  });
  const program = await buildProgram(argv);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit through here with code 0; usage errors already printed.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (isEpipe(err)) return EXIT_SIGPIPE;
    return renderError(err, Boolean(program.opts()['verbose']));
  }
}

main(process.argv).then(
  (code) => process.exit(code),
  (err) => process.exit(renderError(err, true)),
);
