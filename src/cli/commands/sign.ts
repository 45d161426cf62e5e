/** `ostree-oci keygen` and `ostree-oci sign`. */
import { lstatSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../../errors.js';
import { Repo } from '../../ostree/repo.js';
import { generateKeyPair, readSecretKeyFile } from '../../sign/ed25519.js';
import { signCommitEd25519, signCommitGpg } from '../../sign/commit-signatures.js';
import { checkDirectoryOption, printJson } from '../output.js';

export function register(program: Command): void {
  program
    .command('keygen')
    .description('generate an ed25519 key pair in ostree\'s format: KEY (base64 seed‖public) and KEY.pub (base64 public)')
    .requiredOption('--out <path>', 'secret key file to create (the public key goes to <path>.pub)')
    .option('--force', 'overwrite existing files')
    .option('--json', 'machine-readable output')
    .action((opts: { out: string; force?: boolean; json?: boolean }) => {
      const pubPath = `${opts.out}.pub`;
      // --force replaces files, nothing else: a directory (or device…) in the way is refused
      // before anything is written.
      for (const p of [opts.out, pubPath]) {
        const st = lstatSync(p, { throwIfNoEntry: false });
        if (!st) continue;
        if (!opts.force) throw new UsageError(`${p} exists; use --force to overwrite`);
        if (!st.isFile()) throw new UsageError(`${p} exists and is not a regular file`);
      }
      const k = generateKeyPair();
      // Write both through temporary names so a failure never leaves half a key pair; temporaries
      // are removed whatever fails.
      const tmpSecret = `${opts.out}.${process.pid}.tmp`;
      const tmpPublic = `${pubPath}.${process.pid}.tmp`;
      const created: string[] = [];
      try {
        writeFileSync(tmpSecret, `${k.secret}\n`, { mode: 0o600, flag: 'wx' });
        created.push(tmpSecret);
        writeFileSync(tmpPublic, `${k.public}\n`, { mode: 0o644, flag: 'wx' });
        created.push(tmpPublic);
        renameSync(tmpSecret, opts.out);
        renameSync(tmpPublic, pubPath);
      } catch (e) {
        for (const t of created) rmSync(t, { force: true });
        throw e;
      }
      if (opts.json) printJson({ secretKeyFile: opts.out, publicKeyFile: pubPath, publicKey: k.public });
      else process.stdout.write(`secret key: ${opts.out}\npublic key: ${pubPath} (${k.public})\n`);
    });

  program
    .command('sign')
    .description('sign a commit: ed25519 (ostree.sign.ed25519) or GPG through libostree (ostree.gpgsigs); other commitmeta keys are kept')
    .requiredOption('--repo <path>', 'ostree repository')
    .argument('<rev>', 'ref or checksum')
    .option('--keyfile <path>', 'ed25519 secret key file (base64 of seed‖public, as ostree sign --keys-file)')
    .option('--gpg-key <id>', 'GPG key id to sign with')
    .option('--gpg-homedir <dir>', 'GnuPG home directory')
    .option('--json', 'machine-readable output')
    .action(async (rev: string, opts: { repo: string; keyfile?: string; gpgKey?: string; gpgHomedir?: string; json?: boolean }) => {
      if (Boolean(opts.keyfile) === Boolean(opts.gpgKey)) throw new UsageError('sign needs exactly one of --keyfile or --gpg-key');
      if (opts.gpgHomedir) checkDirectoryOption(opts.gpgHomedir, '--gpg-homedir');
      const key = opts.keyfile ? readSecretKeyFile(opts.keyfile) : null;
      const repo = Repo.open(opts.repo);
      try {
        if (key) {
          const r = await signCommitEd25519(repo, rev, key);
          if (opts.json) printJson({ commit: r.commit, type: 'ed25519', publicKey: key.publicKey.toString('base64'), signature: r.signature.toString('hex') });
          else process.stdout.write(`signed ${r.commit} with ed25519 key ${key.publicKey.toString('base64')}\n`);
        } else {
          const r = await signCommitGpg(repo, rev, opts.gpgKey!, opts.gpgHomedir);
          if (opts.json) printJson({ commit: r.commit, type: 'gpg', keyId: opts.gpgKey });
          else process.stdout.write(`signed ${r.commit} with GPG key ${opts.gpgKey}\n`);
        }
      } finally {
        repo.close();
      }
    });
}
