/**
 * Helpers for test/container-*.test.ts: a signed-looking sample commit made with the real ostree
 * CLI, and an image rewriter that edits a layer's tar entries and re-packs the OCI layout with
 * recomputed blob digests, sizes, diffids and `ostree.final-diffid` (so the OCI-level checks pass
 * and only the ostree-level checks can catch the change).
 *
 * The rewriter reads layers with tar-stream and writes them with its own minimal GNU tar encoder,
 * independent of src/container, and writes whatever names it is given (`../x`, `/abs`).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { Repo } from '../src/ostree/repo.js';
import { serializeMetadata } from '../src/gvariant/ostree-types.js';
import { ostreeCommit, ostreeInit, writeSampleTree, type SampleTreeOptions } from '../scripts/lib/sample-tree.js';

export const sha256hex = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

export interface SampleRepo {
  repo: string;
  tree: string;
  commit: string;
  commitmeta: Buffer;
}

/** The detached metadata the tests attach: a well-formed (fake) ed25519 signature and a custom key. */
export function sampleCommitmeta(): Buffer {
  return serializeMetadata([
    ['my-detached-key', { type: 's', value: 'my-detached-value' }],
    ['ostree.sign.ed25519', { type: 'aay', value: [Buffer.alloc(64, 0x5a)] }],
  ]);
}

/**
 * writeSampleTree(containerLayout) committed with the ostree CLI (`--bootable`, version 42.0,
 * ostree.container-cmd) into a fresh repo of `mode`, plus commitmeta written with
 * Repo.writeCommitMeta.
 */
export function makeSampleRepo(dir: string, opts: SampleTreeOptions & { mode?: string; subject?: string } = {}): SampleRepo {
  const tree = join(dir, 'tree');
  const repo = join(dir, 'src-repo');
  writeSampleTree(tree, { containerLayout: true, bigFileMiB: 1, ...opts });
  ostreeInit(repo, opts.mode ?? 'bare-user');
  const commit = ostreeCommit(repo, tree, {
    subject: opts.subject ?? 'sample',
    extraArgs: ['--bootable', '--add-metadata-string=version=42.0', `--add-metadata=ostree.container-cmd=['/usr/bin/hello']`],
  });
  const commitmeta = sampleCommitmeta();
  const r = Repo.open(repo);
  try {
    r.writeCommitMeta(commit, commitmeta);
  } finally {
    r.close();
  }
  return { repo, tree, commit, commitmeta };
}

/** Number of object files (any type) in a repository. */
export function countObjects(repo: string): number {
  let n = 0;
  const objects = join(repo, 'objects');
  for (const d of readdirSync(objects)) for (const _ of readdirSync(join(objects, d))) n++;
  return n;
}

/**
 * Files inside libostree's staging directories (`tmp/staging-*`): what the next transaction on the
 * repository, by any tool, would move into objects/.
 */
export function stagedFiles(repo: string): number {
  let n = 0;
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else n++;
    }
  };
  for (const e of readdirSync(join(repo, 'tmp'), { withFileTypes: true })) {
    if (e.isDirectory() && e.name.startsWith('staging-')) walk(join(repo, 'tmp', e.name));
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Layer entries

export interface LayerEntry {
  name: string;
  type: 'file' | 'link' | 'symlink' | 'directory' | string;
  mode: number;
  uid: number;
  gid: number;
  linkname?: string;
  data: Buffer;
  pax?: Record<string, string>;
  /** Header mtime (default 0; writeTarEntries only). */
  mtime?: number;
}

/** Parse an uncompressed tar with tar-stream. */
export async function readTarEntries(buf: Buffer): Promise<LayerEntry[]> {
  const ex = tar.extract();
  const out: LayerEntry[] = [];
  const done = (async () => {
    for await (const e of ex as AsyncIterable<tar.Entry>) {
      const chunks: Buffer[] = [];
      for await (const c of e) chunks.push(c as Buffer);
      const h = e.header;
      const entry: LayerEntry = {
        name: h.name,
        type: h.type ?? 'file',
        mode: h.mode ?? 0,
        uid: h.uid ?? 0,
        gid: h.gid ?? 0,
        data: Buffer.concat(chunks),
      };
      if (h.linkname) entry.linkname = h.linkname;
      if (h.pax && Object.keys(h.pax).length) entry.pax = { ...h.pax };
      out.push(entry);
    }
  })();
  ex.end(buf);
  await done;
  return out;
}

const TYPE_FLAG: Record<string, string> = { file: '0', link: '1', symlink: '2', directory: '5' };

function octal(n: number, len: number): string {
  return `${n.toString(8).padStart(len - 1, '0')}\0`;
}

function rawHeader(name: string, type: string, e: { mode: number; uid: number; gid: number; size: number; linkname?: string; mtime?: number }): Buffer {
  const h = Buffer.alloc(512);
  h.write(name.slice(0, 100), 0, 'utf8');
  h.write(octal(e.mode & 0o7777, 8), 100, 'latin1');
  h.write(octal(e.uid, 8), 108, 'latin1');
  h.write(octal(e.gid, 8), 116, 'latin1');
  h.write(octal(e.size, 12), 124, 'latin1');
  h.write(octal(e.mtime ?? 0, 12), 136, 'latin1');
  h.write(type, 156, 'latin1');
  if (e.linkname) h.write(e.linkname.slice(0, 100), 157, 'utf8');
  h.write('ustar  \0', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

const pad = (n: number): Buffer => Buffer.alloc((512 - (n % 512)) % 512);

/** A minimal GNU tar writer: L/K entries for long names, PAX `x` entries, no normalization. */
export function writeTarEntries(entries: LayerEntry[]): Buffer {
  const parts: Buffer[] = [];
  const longEntry = (flag: string, value: string): void => {
    const data = Buffer.from(`${value}\0`, 'utf8');
    parts.push(rawHeader('././@LongLink', flag, { mode: 0o644, uid: 0, gid: 0, size: data.length }), data, pad(data.length));
  };
  for (const e of entries) {
    if (e.pax && Object.keys(e.pax).length) {
      const recs = Object.entries(e.pax).map(([k, v]) => {
        const body = ` ${k}=${v}\n`;
        let len = Buffer.byteLength(body) + 1;
        while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
        return `${len}${body}`;
      });
      const data = Buffer.from(recs.join(''), 'utf8');
      parts.push(rawHeader('', 'x', { mode: 0, uid: 0, gid: 0, size: data.length }), data, pad(data.length));
    }
    if (Buffer.byteLength(e.name) > 100) longEntry('L', e.name);
    if (e.linkname && Buffer.byteLength(e.linkname) > 100) longEntry('K', e.linkname);
    const flag = TYPE_FLAG[e.type] ?? '0';
    const size = flag === '0' ? e.data.length : 0;
    const hdr: { mode: number; uid: number; gid: number; size: number; linkname?: string; mtime?: number } = { mode: e.mode, uid: e.uid, gid: e.gid, size };
    if (e.linkname) hdr.linkname = e.linkname;
    if (e.mtime) hdr.mtime = e.mtime;
    parts.push(rawHeader(e.name, flag, hdr));
    if (size) parts.push(e.data, pad(size));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// OCI layout editing

interface Json {
  [k: string]: unknown;
}

export interface LayoutView {
  index: Json & { manifests: Array<{ digest: string; size: number; mediaType: string; annotations?: Record<string, string> }> };
  manifest: Json & { config: { digest: string; size: number }; layers: Array<{ digest: string; size: number; mediaType: string }> };
  config: Json & { rootfs: { diff_ids: string[] }; config?: { Labels?: Record<string, string> } };
  manifestDigest: string;
}

export const blobPath = (dir: string, digest: string): string => join(dir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));

/** The (single) image of an OCI layout. */
export function readLayout(dir: string): LayoutView {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as LayoutView['index'];
  const manifestDigest = index.manifests[0]!.digest;
  const manifest = JSON.parse(readFileSync(blobPath(dir, manifestDigest), 'utf8')) as LayoutView['manifest'];
  const config = JSON.parse(readFileSync(blobPath(dir, manifest.config.digest), 'utf8')) as LayoutView['config'];
  return { index, manifest, config, manifestDigest };
}

function decompress(buf: Buffer, mediaType: string): Buffer {
  if (mediaType.endsWith('+gzip')) return zlib.gunzipSync(buf);
  if (mediaType.endsWith('+zstd')) return execFileSync('zstd', ['-d', '-c', '-q'], { input: buf, maxBuffer: 1 << 30 });
  return buf;
}

function compress(buf: Buffer, mediaType: string): Buffer {
  if (mediaType.endsWith('+gzip')) return zlib.gzipSync(buf);
  if (mediaType.endsWith('+zstd')) return execFileSync('zstd', ['-c', '-q', '-3'], { input: buf, maxBuffer: 1 << 30 });
  return buf;
}

/** The uncompressed tar of layer i. */
export function readLayerTar(dir: string, i: number): Buffer {
  const { manifest } = readLayout(dir);
  const d = manifest.layers[i]!;
  return decompress(readFileSync(blobPath(dir, d.digest)), d.mediaType);
}

function writeBlob(dir: string, data: Buffer): { digest: string; size: number } {
  const digest = `sha256:${sha256hex(data)}`;
  writeFileSync(blobPath(dir, digest), data);
  return { digest, size: data.length };
}

/**
 * Replace layer i's uncompressed tar by `newTar` and re-pack: new blob (same compression),
 * descriptor, diff_ids[i], `ostree.final-diffid` (label and annotation) when layer i was the final
 * one, config, manifest and index.json. Old blobs are left in place.
 */
export function replaceLayerTar(dir: string, i: number, newTar: Buffer): void {
  const v = readLayout(dir);
  const d = v.manifest.layers[i]!;
  const blob = writeBlob(dir, compress(newTar, d.mediaType));
  const oldDiff = v.config.rootfs.diff_ids[i]!;
  const newDiff = `sha256:${sha256hex(newTar)}`;
  v.manifest.layers[i] = { ...d, ...blob };
  v.config.rootfs.diff_ids[i] = newDiff;
  const labels = v.config.config?.Labels;
  if (labels && labels['ostree.final-diffid'] === oldDiff) labels['ostree.final-diffid'] = newDiff;
  const ann = v.manifest['annotations'] as Record<string, string> | undefined;
  if (ann && ann['ostree.final-diffid'] === oldDiff) ann['ostree.final-diffid'] = newDiff;
  writeConfigAndManifest(dir, v);
}

/** Write `v.config` and `v.manifest` as new blobs and point index.json at the manifest. */
export function writeConfigAndManifest(dir: string, v: LayoutView): void {
  const cfg = writeBlob(dir, Buffer.from(JSON.stringify(v.config)));
  v.manifest.config = { ...v.manifest.config, ...cfg };
  const man = writeBlob(dir, Buffer.from(JSON.stringify(v.manifest)));
  v.index.manifests[0] = { ...v.index.manifests[0]!, ...man };
  writeFileSync(join(dir, 'index.json'), JSON.stringify(v.index));
}

/** Edit layer i's entries (in place or by returning a new list) and re-pack the image. */
export async function rewriteLayer(
  dir: string,
  i: number,
  edit: (entries: LayerEntry[]) => LayerEntry[] | void,
): Promise<void> {
  const entries = await readTarEntries(readLayerTar(dir, i));
  const out = edit(entries) ?? entries;
  replaceLayerTar(dir, i, writeTarEntries(out));
}

/** Remove blobs no longer referenced (keeps the layout tidy for skopeo). */
export function pruneBlobs(dir: string): void {
  const v = readLayout(dir);
  const keep = new Set([v.manifestDigest, v.manifest.config.digest, ...v.manifest.layers.map((l) => l.digest)].map((d) => d.slice(7)));
  for (const f of readdirSync(join(dir, 'blobs', 'sha256'))) if (!keep.has(f)) unlinkSync(join(dir, 'blobs', 'sha256', f));
}

export function fileSize(p: string): number {
  return statSync(p).size;
}
