/**
 * Layer reuse must not let one image's unverified claim decide another image's content (found by
 * the fuzzer, issue 9). image pull reuses a stored layer by blob digest without reading it, and
 * later reuses layers by *diffid* through the diff_ids of stored images. An image that pairs a
 * stored blob with a false diffid (its layer is never read, so the claim is never checked) would
 * otherwise make a later, honest image with that diffid get the wrong layer's files.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Repo } from '../src/ostree/repo.js';
import { pullImage } from '../src/store/index.js';
import { ostreeInit } from '../scripts/lib/sample-tree.js';
import { cloneDraft, compressBytes, loadDraft, sha256, writeDraft, type ImageDraft } from '../scripts/lib/fuzz/layout.js';
import { writeTar } from '../scripts/lib/fuzz/tar.js';
import { makeSampleRepo } from './container-helpers.js';
import { CLI, ostreeFsck, tmp } from './helpers/tmp.js';

const root = tmp(t, 'ostree-oci-poison-');
const s = makeSampleRepo(root);
const base = join(root, 'base');
execFileSync(process.execPath, [CLI, 'encapsulate', '--repo', s.repo, 'main', `oci:${base}`, '--compression-fast']);
const baseDraft = loadDraft(base);

const fileTar = (text: string): Buffer =>
  writeTar([{ name: 'usr/share/derived.txt', type: '0', mode: 0o644, uid: 0, gid: 0, mtime: 0, linkname: '', data: Buffer.from(text), pax: [] }]);

/** base + one derived gzip layer; `diffId` (when given) replaces the layer's true diffid. */
function derived(name: string, tar: Buffer, opts: { blob?: Buffer; diffId?: string } = {}): string {
  const d: ImageDraft = cloneDraft(baseDraft);
  d.layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', tar, blob: opts.blob ?? compressBytes(tar, 'gzip'), dirty: false, ...(opts.diffId ? { diffIdOverride: opts.diffId } : {}) });
  const dir = join(root, name);
  writeDraft(d, dir);
  return `oci:${dir}`;
}

function cat(repo: string, rev: string, path: string): string {
  return execFileSync('ostree', ['cat', `--repo=${repo}`, rev, path], { encoding: 'utf8' });
}

t.test('a false diffid on a stored blob is never trusted', async (t) => {
  const good = fileTar('good\n');
  const evil = fileTar('evil\n');
  const evilBlob = compressBytes(evil, 'gzip');
  const repoPath = join(root, 'repo');
  ostreeInit(repoPath, 'bare-user');
  const repo = Repo.open(repoPath);
  try {
    // 1. An honest image stores the "evil" layer (its blob verified against its true diffid).
    await pullImage(repo, derived('honest-evil', evil, { blob: evilBlob }));
    // 2. A lying image pairs that stored blob with the diffid of the "good" layer.
    let lie: unknown = null;
    try {
      await pullImage(repo, derived('liar', evil, { blob: evilBlob, diffId: sha256(good) }));
    } catch (e) {
      lie = e;
    }
    t.ok(lie, `the lying image is refused (its layer is read and fails its diffid): ${String(lie)}`);
    // 3. An honest image with the "good" layer (a blob the store does not have).
    const r = await pullImage(repo, derived('honest-good', good));
    const layer = r.layers[r.layers.length - 1]!;
    t.equal(layer.action, 'fetched', 'its layer is fetched, not reused through the lying claim');
    t.equal(cat(repoPath, r.imageRef, '/usr/share/derived.txt'), 'good\n', 'the image has its own files');
  } finally {
    repo.close();
  }
  t.doesNotThrow(() => ostreeFsck(repoPath));
});

t.test('a stored blob no image vouches for any more is read again before reuse', async (t) => {
  const good = fileTar('good\n');
  const evil = fileTar('evil\n');
  const evilBlob = compressBytes(evil, 'gzip');
  const repoPath = join(root, 'repo2');
  ostreeInit(repoPath, 'bare-user');
  const repo = Repo.open(repoPath);
  try {
    const honest = derived('honest-evil-2', evil, { blob: evilBlob });
    await pullImage(repo, honest);
    // The honest image goes; its layer stays until prune.
    const { removeImage } = await import('../src/store/index.js');
    await removeImage(repo, honest);
    let lie: unknown = null;
    try {
      await pullImage(repo, derived('liar-2', evil, { blob: evilBlob, diffId: sha256(good) }));
    } catch (e) {
      lie = e;
    }
    t.ok(lie, `refused: ${String(lie)}`);
    const r = await pullImage(repo, derived('honest-good-2', good));
    t.equal(cat(repoPath, r.imageRef, '/usr/share/derived.txt'), 'good\n');
  } finally {
    repo.close();
  }
});

t.test('honest reuse still works: same blob, same diffid, nothing read', async (t) => {
  const good = fileTar('shared\n');
  const blob = compressBytes(good, 'gzip');
  const repoPath = join(root, 'repo3');
  ostreeInit(repoPath, 'bare-user');
  const repo = Repo.open(repoPath);
  try {
    await pullImage(repo, derived('a', good, { blob }));
    const d = cloneDraft(baseDraft);
    d.config['x-other'] = 1; // another image (new config and manifest digest), same layers
    d.layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', tar: good, blob, dirty: false });
    writeDraft(d, join(root, 'b'));
    const r = await pullImage(repo, `oci:${join(root, 'b')}`);
    t.ok(r.layers.every((l) => l.action !== 'fetched'), 'every layer reused');
    t.equal(r.bytesFetched, 0);
  } finally {
    repo.close();
  }
});
