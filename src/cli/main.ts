#!/usr/bin/env node
/**
 * ostree-oci CLI: a thin shell over the library. Each command lives in ./commands/<name>.ts and
 * exports `register(program)`; add new commands to COMMANDS below.
 */
import { Command, CommanderError } from 'commander';
import { renderError } from './output.js';
import { LIMITS_ENV, parseLimits } from '../limits.js';
// (commands are imported here)
import * as show from './commands/show.js';
import * as fsck from './commands/fsck.js';
import * as sign from './commands/sign.js';
import * as verify from './commands/verify.js';
import * as commitComposefs from './commands/commit-composefs.js';
import * as roundtripCmd from './commands/roundtrip.js';
import * as fsverityCmd from './commands/fsverity.js';
import * as encapsulateCmd from './commands/encapsulate.js';
import * as unencapsulateCmd from './commands/unencapsulate.js';
import * as composefsCmd from './commands/composefs.js';
import * as migrateCmd from './commands/migrate.js';
import * as cfsCmd from './commands/cfs.js';
import * as imageCmd from './commands/image.js';
import * as sealCmd from './commands/seal.js';

interface CommandModule {
  register(program: Command): void;
}

const COMMANDS: CommandModule[] = [show, fsck, sign, verify, commitComposefs, roundtripCmd, fsverityCmd, encapsulateCmd, unencapsulateCmd, composefsCmd, migrateCmd, cfsCmd, imageCmd, sealCmd];

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('ostree-oci')
    .description('Move ostree commits to and from OCI images and composefs, keeping signatures intact')
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
  for (const mod of COMMANDS) mod.register(program);
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit through here with code 0; usage errors already printed.
      return err.exitCode === 0 ? 0 : 2;
    }
    return renderError(err, Boolean(program.opts()['verbose']));
  }
}

main(process.argv).then(
  (code) => process.exit(code),
  (err) => process.exit(renderError(err, true)),
);
