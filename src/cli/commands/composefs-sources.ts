/**
 * The image/directory side of `ostree-oci composefs` (attached to the group by composefs.ts):
 *
 *   composefs IMGREF | --dir PATH | --repo R REV [-o IMAGE] [--dump] [--print-digest]
 *             [--boot-variant] [--root-metadata image|synthesize|from-usr] [--xattrs allowlist|all]
 *       an OCI image's merged layers (or a directory, or a commit) → composefs image / dumpfile /
 *       digest
 *   composefs diff A B [--json] [--max N]
 *       first differing paths and fields of two trees (image file, dumpfile, repo:PATH:REV,
 *       IMGREF, dir:PATH)
 */
import type { Command } from 'commander';
import { OstreeOciError, UsageError } from '../../errors.js';
import { ROOT_POLICIES, XATTR_POLICIES, type ImageTreeOptions, type RootMetadataPolicy, type XattrPolicy } from '../../composefs/sources/image-tree.js';
import type { TreeNode } from '../../tree/model.js';
import { endProgress, printJson, progress } from '../output.js';

interface SourceOpts {
  dir?: string;
  repo?: string;
  output?: string;
  dump?: boolean;
  printDigest?: boolean;
  bootVariant?: boolean;
  rootMetadata: string;
  xattrs: string;
  tlsVerify: boolean;
}

interface DiffOpts {
  json?: boolean;
  max: string;
  bootVariant?: boolean;
  rootMetadata: string;
  xattrs: string;
  tlsVerify: boolean;
}

function treeOptions(o: { bootVariant?: boolean; rootMetadata: string; xattrs: string }): ImageTreeOptions {
  if (!(XATTR_POLICIES as readonly string[]).includes(o.xattrs)) {
    throw new UsageError(`--xattrs must be one of ${XATTR_POLICIES.join(', ')}, not ${JSON.stringify(o.xattrs)}`);
  }
  if (!(ROOT_POLICIES as readonly string[]).includes(o.rootMetadata)) {
    throw new UsageError(`--root-metadata must be one of ${ROOT_POLICIES.join(', ')}, not ${JSON.stringify(o.rootMetadata)}`);
  }
  return { xattrs: o.xattrs as XattrPolicy, rootMetadata: o.rootMetadata as RootMetadataPolicy, bootVariant: Boolean(o.bootVariant) };
}

const ruleOptions = (c: Command): Command =>
  c
    .option('--boot-variant', 'empty /boot and /sysroot (bootable variant; they keep their mode/owner/xattrs and take /usr\'s mtime)')
    .option('--root-metadata <policy>', "root directory metadata: image (tar root entry / the directory itself, else 0555 root:root newest mtime), synthesize, from-usr (/usr's, and /run emptied, as composefs-rs)", 'image')
    .option('--xattrs <policy>', 'xattrs kept: allowlist (security.capability, security.ima, user.* but user.overlay.*) or all', 'allowlist')
    .option('--no-tls-verify', 'do not verify TLS for docker:// references');

/** A `composefs diff` side that cannot be read: exit 2, as diff(1), since 1 means "different". */
class DiffTroubleError extends OstreeOciError {
  override readonly exitCode = 2;
}

export function registerImageSources(group: Command): void {
  ruleOptions(
    group
      .argument('[IMGREF]', 'OCI image: oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://NAME[:TAG] (or --dir PATH, or REV with --repo)')
      .option('--dir <PATH>', 'read a directory (e.g. an extracted image) instead of an image')
      .option('--repo <PATH>', 'the argument is a commit of this ostree repository (libostree\'s composefs rules; with --boot-variant)')
      .option('-o, --output <IMAGE>', 'write the composefs image (atomically; `-` for stdout)')
      .option('--dump', 'print the image\'s dumpfile on stdout (as `composefs-info dump` would)')
      .option('--print-digest', 'print the composefs digest (the default when neither -o nor --dump is given)'),
  ).action(async (imgref: string | undefined, opts: SourceOpts) => {
    if ((imgref === undefined) === (opts.dir === undefined)) {
      throw new UsageError(imgref === undefined ? 'composefs needs an IMGREF, --dir PATH or --repo R REV (or a sub-command; see --help)' : 'give either IMGREF or --dir, not both');
    }
    if (opts.repo !== undefined && (opts.dir !== undefined || opts.rootMetadata !== 'image' || opts.xattrs !== 'allowlist')) {
      throw new UsageError('--repo R REV uses libostree\'s rules: --dir, --root-metadata and --xattrs do not apply');
    }
    if (opts.dump && opts.printDigest) throw new UsageError('--dump and --print-digest both write to stdout; use one (with -o for the image)');
    if (opts.output === '-' && (opts.dump || opts.printDigest)) throw new UsageError('-o - writes the image to stdout; it cannot be combined with --dump or --print-digest');
    if (opts.output === '-' && process.stdout.isTTY) throw new UsageError('stdout is a tty; refusing to write an image to it');
    if (opts.output !== undefined && opts.output !== '-') await (await import('../../composefs/index.js')).checkImageOutput(opts.output);
    const rules = treeOptions(opts);
    const tick = progress('composefs');
    let root: TreeNode;
    try {
      if (opts.repo !== undefined) {
        const { Repo } = await import('../../ostree/repo.js');
        const { treeFromCommit } = await import('../../composefs/sources/ostree-commit.js');
        const { bootVariantOf } = await import('../../composefs/sources/image-tree.js');
        const repo = Repo.open(opts.repo);
        try {
          root = (await treeFromCommit(repo, imgref!, { onProgress: (d, n) => tick(`${d}/${n} files`) })).root;
        } finally {
          repo.close();
        }
        if (rules.bootVariant) root = bootVariantOf(root);
      } else if (opts.dir !== undefined) {
        const { treeFromDirectory } = await import('../../composefs/sources/directory.js');
        root = await treeFromDirectory(opts.dir, { ...rules, onProgress: (d, n) => tick(`${d}/${n} files`) });
      } else {
        const { openImage } = await import('../../oci/index.js');
        const { treeFromImage } = await import('../../composefs/sources/oci-layers.js');
        const img = await openImage(imgref!, opts.tlsVerify === false ? { tlsVerify: false } : {});
        try {
          root = await treeFromImage(img, { ...rules, onLayer: (i, n, s) => tick(`layer ${i + 1}/${n} (${s.entries} entries)`) });
        } finally {
          await img.close();
        }
      }
    } finally {
      endProgress();
    }
    const { buildErofs, writeImageFile, writeImageStream } = await import('../../composefs/index.js');
    const { FsVerityHasher } = await import('../../composefs/fsverity.js');
    const image = buildErofs(root);
    if (opts.repo !== undefined) (await import('../../composefs/from-commit.js')).refuseWhatLibostreeCannotBuild(image, imgref!);
    const hasher = new FsVerityHasher();
    const observe = (c: Buffer): void => void hasher.update(c);
    if (opts.output === '-') await writeImageStream(image, process.stdout, observe);
    else if (opts.output !== undefined) await writeImageFile(image, opts.output, observe);
    if (opts.dump) {
      // The dump of the image as written (what composefs-info dump prints), not of the tree.
      const { readErofsImageSync } = await import('../../composefs/erofs/reader.js');
      const { writeDumpfileTo } = await import('../../composefs/dumpfile/writer.js');
      await writeDumpfileTo(readErofsImageSync(image.toBuffer()), process.stdout);
      return;
    }
    if (opts.output === undefined) for (const c of image.chunks()) hasher.update(c);
    if (opts.printDigest || opts.output === undefined) process.stdout.write(`${hasher.digest().toString('hex')}\n`);
  });

  // The rule options (--boot-variant, --root-metadata, --xattrs, --no-tls-verify) belong to the
  // group: commander hands them to it wherever they appear, so diff reads them from there.
  group
    .command('diff')
    .description('print the first differing paths and fields of two trees; exit 0 when equal, 1 when they differ, 2 when a side cannot be read (the rule options of `composefs` apply to image/directory/commit sides)')
    .argument('<A>', 'composefs image file, dumpfile, repo:PATH:REV (ostree commit), IMGREF, or dir:PATH / a directory')
    .argument('<B>', 'the other side (same forms)')
    .option('--json', 'machine-readable output')
    .option('--max <N>', 'stop after N differences', '20')
    .action(async (a: string, b: string, own: { json?: boolean; max: string }) => {
      const opts: DiffOpts = { ...(group.opts() as Omit<DiffOpts, 'json' | 'max'>), ...own };
      if (!/^\d+$/.test(opts.max) || Number(opts.max) < 1) throw new UsageError(`--max must be a positive integer, got ${JSON.stringify(opts.max)}`);
      const rules = treeOptions(opts);
      const { loadTree, diffTrees, formatDifferences } = await import('../../composefs/diff.js');
      const load = { ...rules, ...(opts.tlsVerify === false ? { tlsVerify: false } : {}) };
      // diff(1)'s convention: 1 means "they differ", so a side that cannot be read exits 2.
      const side = (x: string) =>
        loadTree(x, load).catch((e: unknown) => {
          throw e instanceof OstreeOciError && e.exitCode === 2 ? e : new DiffTroubleError((e as Error)?.message ?? String(e), { side: x });
        });
      const ta = await side(a);
      const tb = await side(b);
      const r = diffTrees(ta.root, tb.root, { max: Number(opts.max) });
      if (opts.json) printJson({ a, b, equal: r.differences.length === 0, ...r });
      else process.stdout.write(r.differences.length === 0 ? 'no differences\n' : formatDifferences(r));
      process.exitCode = r.differences.length === 0 ? 0 : 1;
    });
}
