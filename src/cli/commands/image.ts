/**
 * `ostree-oci image pull|list|inspect|remove|prune --repo R …`: the image store (src/store).
 *
 *   image pull --repo R IMGREF [--store-mode=direct|merge] [--no-tls-verify] [--authfile F]
 *              [--fetch=registry|skopeo] [--json]
 *   image list --repo R [--json]
 *   image inspect --repo R IMGREF [--json]
 *   image remove --repo R IMGREF… [--json]
 *   image prune --repo R [--keep-objects] [--json]
 */
import type { Command } from 'commander';
import { UsageError } from '../../errors.js';
import { Repo } from '../../ostree/repo.js';
import {
  inspectImage,
  listImages,
  pruneImages,
  pullImage,
  removeImages,
  type PullOptions,
  type PullResult,
} from '../../store/index.js';
import { endProgress, printJson, progress } from '../output.js';

function human(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1073741824) return `${(n / 1048576).toFixed(1)} MiB`;
  return `${(n / 1073741824).toFixed(2)} GiB`;
}

const short = (c: string | null | undefined): string => (c ? c.slice(0, 12) : '-');

function renderPull(r: PullResult): string {
  const lines: string[] = [];
  lines.push(`${r.alreadyPresent ? 'already present' : 'pulled'}: ${r.imgref}`);
  lines.push(`  manifest:  ${r.manifestDigest}`);
  lines.push(`  image ref: ${r.imageRef} → ${r.commit}${r.mode === 'direct' ? ' (the original commit)' : ' (merge commit)'}`);
  if (r.metaRef) lines.push(`  metadata:  ${r.metaRef} → ${r.metaCommit}`);
  if (r.baseCommit && r.baseCommit !== r.commit) lines.push(`  base:      ${r.baseCommit} (parent of the merge commit)`);
  const cm = r.mode === 'direct' ? r.imageCommitmeta : r.baseCommitmeta;
  if (cm) {
    lines.push(
      `  commitmeta: ${cm.present ? `${cm.size} bytes (${cm.keys.join(', ') || 'no keys'})` : 'none'}${cm.signed ? ', signed' : ', not signed'}` +
        (r.mode === 'merge' ? ' — on the base commit' : ''),
    );
  }
  if (r.previousManifestDigest && r.previousManifestDigest !== r.manifestDigest) lines.push(`  updated from ${r.previousManifestDigest} (${r.previousCommit})`);
  lines.push(
    `  layers: ${r.layersFetched} fetched (${human(r.bytesFetched)}), ${r.layersReused} reused (${human(r.bytesReused)})` +
      (r.derivedLayers ? `, ${r.derivedLayers} derived` : ''),
  );
  for (const l of r.layers) lines.push(`    ${String(l.index).padStart(3)} ${l.role.padEnd(7)} ${l.action.padEnd(16)} ${l.digest} ${human(l.size)}`);
  const filtered = Object.entries(r.filtered);
  if (filtered.length) lines.push(`  filtered (not under /usr, /etc, /var): ${filtered.map(([k, v]) => `${k}: ${v}`).join(', ')}`);
  if (r.removedFiles.length) lines.push(`  removed empty: ${r.removedFiles.join(', ')}`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  return `${lines.join('\n')}\n`;
}

export function register(program: Command): void {
  const image = program.command('image').description('image store: pull OCI images into an ostree repository, keeping the original commit and its signatures');

  image
    .command('pull')
    .description('pull an image into the store (layers already present are reused; one transaction)')
    .requiredOption('--repo <path>', 'ostree repository')
    .argument('<imgref>', 'oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://NAME[:TAG|@DIGEST]')
    .option('--store-mode <mode>', 'pure ostree images: direct (image ref → original commit) or merge (ostree-ext merge commit)', 'direct')
    .option('--no-tls-verify', 'do not verify TLS for docker:// (and use http when the registry has no TLS)')
    .option('--authfile <file>', 'registry credentials file')
    .option('--fetch <how>', 'docker:// only: registry (download only missing blobs) or skopeo (copy the whole image first)', 'registry')
    .option('--json', 'print a JSON summary')
    .action(async (imgref: string, opts: { repo: string; storeMode: string; tlsVerify: boolean; authfile?: string; fetch: string; json?: boolean }) => {
      if (opts.storeMode !== 'direct' && opts.storeMode !== 'merge') throw new UsageError(`--store-mode must be direct or merge, not ${JSON.stringify(opts.storeMode)}`);
      if (opts.fetch !== 'registry' && opts.fetch !== 'skopeo') throw new UsageError(`--fetch must be registry or skopeo, not ${JSON.stringify(opts.fetch)}`);
      const p: PullOptions = { mode: opts.storeMode, tlsVerify: opts.tlsVerify, fetch: opts.fetch };
      if (opts.authfile) p.authFile = opts.authfile;
      const tick = progress('pull');
      p.onProgress = (e) => tick(`layer ${e.layer + 1}/${e.layers} (${e.role}): ${human(e.bytes)} of ${human(e.size)}`);
      const repo = Repo.open(opts.repo);
      try {
        const r = await pullImage(repo, imgref, p);
        endProgress();
        if (opts.json) printJson(r);
        else process.stdout.write(renderPull(r));
      } finally {
        endProgress();
        repo.close();
      }
    });

  image
    .command('list')
    .description('list the images in the store')
    .requiredOption('--repo <path>', 'ostree repository')
    .option('--json', 'print JSON')
    .action((opts: { repo: string; json?: boolean }) => {
      const repo = Repo.open(opts.repo);
      try {
        const list = listImages(repo);
        if (opts.json) return printJson(list);
        if (!list.length) return void process.stdout.write('no images\n');
        for (const i of list) {
          if (i.error) {
            process.stdout.write(`${i.imgref}\n  commit ${i.commit}\n  error: ${i.error}\n`);
            continue;
          }
          process.stdout.write(
            `${i.imgref}\n  manifest ${i.manifestDigest}\n  commit ${i.commit} (${i.mode}${i.derivedLayers ? `, ${i.derivedLayers} derived layers` : ''})` +
              `${i.baseCommit && i.baseCommit !== i.commit ? `, base ${short(i.baseCommit)}` : ''}\n` +
              `  signed: ${i.signed ? 'yes' : 'no'}${i.baseCommit && i.baseCommit !== i.commit ? `, base signed: ${i.baseSigned ? 'yes' : 'no'}` : ''}\n`,
          );
        }
      } finally {
        repo.close();
      }
    });

  image
    .command('inspect')
    .description('show one stored image: refs, commits, signatures, layers')
    .requiredOption('--repo <path>', 'ostree repository')
    .argument('<imgref>', 'image reference as pulled')
    .option('--json', 'print JSON')
    .action((imgref: string, opts: { repo: string; json?: boolean }) => {
      const repo = Repo.open(opts.repo);
      try {
        const d = inspectImage(repo, imgref);
        if (opts.json) return printJson(d);
        const out = [
          `image:     ${d.imgref}`,
          `image ref: ${d.imageRef} → ${d.commit} (${d.mode})`,
          ...(d.metaRef ? [`metadata:  ${d.metaRef} → ${d.metaCommit}`] : []),
          `manifest:  ${d.manifestDigest}${d.manifestBytesExact ? '' : ' (stored manifest text is not the original bytes)'}`,
          `config:    ${d.configDigest}`,
          ...(d.baseCommit && d.baseCommit !== d.commit ? [`base:      ${d.baseCommit}`] : []),
          `signed:    ${d.signed ? 'yes' : 'no'}${d.baseCommit && d.baseCommit !== d.commit ? ` (base: ${d.baseSigned ? 'yes' : 'no'})` : ''}`,
          `composefs: ${d.composefsDigestV0 ?? 'no ostree.composefs.digest.v0'}${d.composefsAnnotation ? `; annotation ${d.composefsAnnotation}` : ''}`,
          'layers:',
          ...d.layers.map((l) => `  ${String(l.index).padStart(3)} ${l.role.padEnd(7)} ${l.digest} → ${l.commit ?? 'MISSING'}`),
        ];
        process.stdout.write(`${out.join('\n')}\n`);
      } finally {
        repo.close();
      }
    });

  image
    .command('remove')
    .description('remove images from the store (their refs); run prune to drop unused layers and objects')
    .requiredOption('--repo <path>', 'ostree repository')
    .argument('<imgref...>', 'image references as pulled')
    .option('--json', 'print JSON')
    .action(async (imgrefs: string[], opts: { repo: string; json?: boolean }) => {
      const repo = Repo.open(opts.repo);
      try {
        const out = await removeImages(repo, imgrefs);
        if (opts.json) printJson(out);
        else for (const r of out) process.stdout.write(`removed ${r.imgref} (${r.imageRef} was ${r.commit})\n`);
      } finally {
        repo.close();
      }
    });

  image
    .command('prune')
    .description('delete layer refs no image uses, then unreachable objects (ostree prune --refs-only)')
    .requiredOption('--repo <path>', 'ostree repository')
    .option('--keep-objects', 'only delete layer refs; leave objects')
    .option('--json', 'print JSON')
    .action(async (opts: { repo: string; keepObjects?: boolean; json?: boolean }) => {
      const repo = Repo.open(opts.repo);
      try {
        const r = await pruneImages(repo, { keepObjects: Boolean(opts.keepObjects) });
        if (opts.json) return printJson(r);
        process.stdout.write(`removed ${r.removedLayerRefs.length} unused layer refs, kept ${r.keptLayerRefs}\n`);
        for (const l of r.removedLayerRefs) process.stdout.write(`  ${l.digest}\n`);
        if (r.objects) process.stdout.write(`${r.objects.output}\n`);
      } finally {
        repo.close();
      }
    });
}
