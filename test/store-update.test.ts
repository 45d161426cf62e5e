/**
 * Updates: v1 and v2 of an image differ in one subtree; both are encapsulated with the same
 * chunking, so only the commit layer and one chunk differ. Pulling v2 after v1 must fetch exactly
 * those layers (counted in the JSON output, bytes included), from an OCI layout and from a real
 * docker-registry on 127.0.0.1 (blobs fetched one by one over the registry API).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { escapeRef } from '../src/store/refescape.js';
import { ostreeCommit } from '../scripts/lib/sample-tree.js';
import { readLayout } from './container-helpers.js';
import { freePort, startRegistry } from './oci-helpers.js';
import { cli, ostreeFsck, tmp } from './helpers/tmp.js';
import { hasCommit, newRepo, refs, run, runJson, signedComposefsRepo } from './store-helpers.js';

const root = tmp(t, 'ostree-oci-store-update-');
const src = signedComposefsRepo(root);
const v1 = src.commit;
// v2: the same tree with one file under /usr/share/doc changed, composefs digest and signature redone.
writeFileSync(join(root, 'tree', 'usr/share/doc/README'), 'This is version 2 of the README.\n');
ostreeCommit(src.repo, join(root, 'tree'), { branch: 'plain2', timestamp: 1_700_000_100 });
const v2 = run('commit-composefs', '--repo', src.repo, 'plain2', '-b', 'v2').trim();
run('sign', '--repo', src.repo, 'v2', '--keyfile', src.key);

interface Pull {
  commit: string;
  manifestDigest: string;
  previousCommit: string | null;
  layersFetched: number;
  layersReused: number;
  bytesFetched: number;
  bytesReused: number;
  transport: string;
  imageRef: string;
  layers: Array<{ digest: string; action: string; size: number; bytesRead: number; role: string }>;
}

function expectUpdate(t: Tap.Test, r: Pull, l1: ReturnType<typeof readLayout>, l2: ReturnType<typeof readLayout>): void {
  const old = new Set(l1.manifest.layers.map((l) => l.digest));
  const changed = l2.manifest.layers.filter((l) => !old.has(l.digest));
  t.equal(l2.manifest.layers.length, l1.manifest.layers.length, 'same number of layers');
  t.equal(changed.length, 2, 'the commit layer and one chunk changed');
  t.equal(changed[0]!.digest, l2.manifest.layers[0]!.digest, 'one of them is the commit layer');
  t.equal(r.layersFetched, 2, 'fetched only the changed layers');
  t.equal(r.layersReused, l2.manifest.layers.length - 2);
  t.same(
    r.layers.filter((l) => l.action === 'fetched').map((l) => l.digest),
    changed.map((l) => l.digest),
  );
  t.equal(r.bytesFetched, changed.reduce((n, l) => n + l.size, 0), 'bytes fetched = compressed size of the changed layers');
  t.equal(r.bytesReused, l2.manifest.layers.filter((l) => old.has(l.digest)).reduce((n, l) => n + l.size, 0));
  t.ok(r.layers.filter((l) => l.action !== 'fetched').every((l) => l.bytesRead === 0), 'reused layers not read at all');
}

type Tap = typeof t;
declare namespace Tap {
  type Test = Parameters<Parameters<typeof t.test>[1]>[0];
}

const prepareRoot = (repo: string, rev: string) => cli(['verify', '--repo', repo, rev, '--pubkeys', src.pub, '--composefs']);

t.test('oci: v1 then v2 fetches only the changed layers', async (t) => {
  const d1 = join(root, 'v1');
  const d2 = join(root, 'v2');
  run('encapsulate', '--repo', src.repo, 'main', `oci:${d1}`, '--max-layers', '3');
  run('encapsulate', '--repo', src.repo, 'v2', `oci:${d2}`, '--max-layers', '3');
  const l1 = readLayout(d1);
  const l2 = readLayout(d2);
  // One image name whose content changes, as a tag would.
  const img = join(root, 'img');
  execFileSync('cp', ['-a', d1, img]);
  const repo = newRepo(join(root, 'dst'));
  const a = runJson<Pull>('image', 'pull', '--repo', repo, `oci:${img}`);
  t.equal(a.commit, v1);
  t.equal(a.layersFetched, l1.manifest.layers.length);
  execFileSync('rm', ['-rf', img]);
  execFileSync('cp', ['-a', d2, img]);
  const b = runJson<Pull>('image', 'pull', '--repo', repo, `oci:${img}`);
  t.equal(b.commit, v2);
  t.equal(b.previousCommit, v1);
  expectUpdate(t, b, l1, l2);
  t.equal(refs(repo)[b.imageRef], v2);
  t.equal(prepareRoot(repo, b.imageRef).status, 0, 'v2 verifies (signature + composefs)');
  t.match(ostreeFsck(repo), /no errors/);

  // Prune drops exactly v1's commit layer and changed chunk, then v1's objects.
  const p = runJson<{ removedLayerRefs: Array<{ digest: string; commit: string }> }>('image', 'prune', '--repo', repo);
  const v2set = new Set(l2.manifest.layers.map((l) => l.digest));
  t.same(
    p.removedLayerRefs.map((x) => x.digest).sort(),
    l1.manifest.layers.filter((l) => !v2set.has(l.digest)).map((l) => l.digest).sort(),
  );
  t.notOk(hasCommit(repo, v1), 'v1 commit pruned');
  t.ok(hasCommit(repo, v2));
  t.equal(prepareRoot(repo, b.imageRef).status, 0, 'v2 still verifies after prune');
  t.match(ostreeFsck(repo), /no errors/);
});

t.test('docker://: v1 then v2 through a real registry, blobs fetched individually', async (t) => {
  const host = await startRegistry(t);
  const ref = `docker://${host}/store/os:latest`;
  run('encapsulate', '--repo', src.repo, 'main', ref, '--max-layers', '3', '--no-tls-verify');
  const repo = newRepo(join(root, 'dst-registry'));
  const a = runJson<Pull>('image', 'pull', '--repo', repo, ref, '--no-tls-verify');
  t.equal(a.transport, 'registry');
  t.equal(a.commit, v1);
  t.equal(a.imageRef, `ostree/container/image/${escapeRef(ref)}`);
  t.match(a.imageRef, /^ostree\/container\/image\/docker_3A__2F__2F_127_2E_0_2E_0_2E_1_3A_\d+\/store\/os_3A_latest$/);
  const l1 = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', ref], { encoding: 'utf8' })) as { layers: Array<{ digest: string; size: number }> };
  t.equal(a.bytesFetched, l1.layers.reduce((n, l) => n + l.size, 0));
  t.equal(prepareRoot(repo, a.imageRef).status, 0, 'v1 verifies');

  run('encapsulate', '--repo', src.repo, 'v2', ref, '--max-layers', '3', '--no-tls-verify');
  const b = runJson<Pull>('image', 'pull', '--repo', repo, ref, '--no-tls-verify');
  t.equal(b.commit, v2);
  const raw = (r: string) => JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', r], { encoding: 'utf8' }));
  const l2 = raw(ref);
  expectUpdate(t, b, { manifest: l1 } as unknown as ReturnType<typeof readLayout>, { manifest: l2 } as unknown as ReturnType<typeof readLayout>);
  t.equal(prepareRoot(repo, b.imageRef).status, 0, 'v2 verifies');
  t.match(ostreeFsck(repo), /no errors/);

  // Same again: nothing to do.
  const c = runJson<Pull & { alreadyPresent: boolean }>('image', 'pull', '--repo', repo, ref, '--no-tls-verify');
  t.ok(c.alreadyPresent);
  t.equal(c.bytesFetched, 0);

  // A pinned digest of v1 (by digest reference) reuses everything it still has.
  const byDigest = `docker://${host}/store/os@${b.manifestDigest}`;
  const d = runJson<Pull>('image', 'pull', '--repo', repo, byDigest, '--no-tls-verify');
  t.equal(d.layersFetched, 0, 'same manifest under another name: all layers reused');

  // The whole-image skopeo path still works and says what it did.
  const e = runJson<Pull & { notes: string[] }>('image', 'pull', '--repo', newRepo(join(root, 'dst-skopeo')), ref, '--no-tls-verify', '--fetch=skopeo');
  t.equal(e.transport, 'skopeo-copy');
  t.equal(e.commit, v2);
  t.match(e.notes.join('\n'), /whole image was downloaded/);
});

t.test('docker://: a missing tag and an unreachable registry fail cleanly', async (t) => {
  const host = await startRegistry(t);
  const repo = newRepo(join(root, 'dst-missing'));
  const r = cli(['image', 'pull', '--repo', repo, `docker://${host}/nothing/here:latest`, '--no-tls-verify']);
  t.not(r.status, 0);
  t.match(r.stderr, /nothing\/here/);
  t.same(refs(repo), {});
  const port = await freePort();
  const u = cli(['image', 'pull', '--repo', repo, `docker://127.0.0.1:${port}/x/y:latest`, '--no-tls-verify']);
  t.not(u.status, 0);
  t.match(u.stderr, new RegExp(`127\\.0\\.0\\.1:${port}/x/y`));
  t.notMatch(u.stderr, /\n\s+at /, 'no stack trace');
  t.same(refs(repo), {});
  t.match(ostreeFsck(repo), /no errors/);
});
