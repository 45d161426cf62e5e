/**
 * `ostree-oci seal SRC DST [--json]`: copy any OCI image with its manifest annotated with the
 * composefs digests (`containers.composefs-digest` for the merged tree, and
 * `org.ostree-oci.composefs.layer-digest` on each layer descriptor). Config and layer blobs are
 * untouched; prints the new manifest digest. DST may be SRC (oci: layouts: the tag moves).
 */
import type { Command } from 'commander';
import { endProgress, printJson, progress } from '../output.js';

interface SealOpts {
  json?: boolean;
  tlsVerify: boolean;
  srcTlsVerify?: boolean;
  destTlsVerify?: boolean;
}

export function register(program: Command): void {
  program
    .command('seal')
    .description('rewrite an OCI image\'s manifest with composefs digest annotations (merged tree and per layer); config and layers untouched')
    .argument('<SRC>', 'source image: oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://NAME[:TAG]')
    .argument('<DST>', 'destination image (may be the source)')
    .option('--json', 'print the digests and the new manifest digest as JSON')
    .option('--no-tls-verify', 'do not verify TLS for docker:// references')
    .action(async (src: string, dst: string, opts: SealOpts) => {
      const { sealImage } = await import('../../composefs/image-digests.js');
      const tick = progress('seal');
      try {
        const r = await sealImage(src, dst, {
          ...(opts.tlsVerify === false ? { tlsVerify: false } : {}),
          onLayer: (i, n, s) => tick(`layer ${i + 1}/${n} (${s.entries} entries)`),
        });
        endProgress();
        if (opts.json) printJson(r);
        else process.stdout.write(`${r.manifestDigest}\n`);
      } finally {
        endProgress();
      }
    });
}
