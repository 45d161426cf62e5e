/**
 * Bad input to `image pull`, with v1 of the image already in the store: a manifest or config
 * whose bytes do not match their digest, an unknown layer media type, a layer whose object bytes
 * were changed (blob digest and diffid recomputed, so only re-checksumming can catch it), a
 * derived layer with a traversal path, and a pull killed mid-download (SIGKILL from outside, while
 * a proxy stalls a layer blob) or at crash points inside the import. Each: a clear error, the
 * image ref still at v1 (refs and object files untouched), `ostree fsck` clean, and a re-pull of
 * the good v2 afterwards succeeds.
 */
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { escapeRef } from '../src/store/refescape.js';
import { ostreeCommit } from '../scripts/lib/sample-tree.js';
import { blobPath, readLayerTar, readLayout, readTarEntries, rewriteLayer, writeConfigAndManifest, writeTarEntries } from './container-helpers.js';
import { CLI, cli, ostreeFsck, repoState, tmp } from './helpers/tmp.js';
import { startRegistry } from './oci-helpers.js';
import { buildDerivedImage, newRepo, refs, run, runJson, signedComposefsRepo } from './store-helpers.js';

const root = tmp(t, 'ostree-oci-store-bad-');
const src = signedComposefsRepo(root);
writeFileSync(join(root, 'tree', 'usr/share/doc/README'), 'version 2\n');
ostreeCommit(src.repo, join(root, 'tree'), { branch: 'plain2', timestamp: 1_700_000_100 });
const v2 = run('commit-composefs', '--repo', src.repo, 'plain2', '-b', 'v2').trim();
run('sign', '--repo', src.repo, 'v2', '--keyfile', src.key);
const good1 = join(root, 'good-v1');
const good2 = join(root, 'good-v2');
run('encapsulate', '--repo', src.repo, 'main', `oci:${good1}`, '--max-layers', '3');
run('encapsulate', '--repo', src.repo, 'v2', `oci:${good2}`, '--max-layers', '3');
const l1 = readLayout(good1);
const l2 = readLayout(good2);
const v1Digests = new Set(l1.manifest.layers.map((l) => l.digest));
/** Index of the v2 chunk that changed, and of one that did not. */
const changedChunk = l2.manifest.layers.findIndex((l, i) => i > 0 && !v1Digests.has(l.digest));
const sameChunk = l2.manifest.layers.findIndex((l, i) => i > 0 && v1Digests.has(l.digest));

let n = 0;
interface Case {
  repo: string;
  img: string;
  imgref: string;
  imageRef: string;
  before: string;
  beforeRefs: Record<string, string>;
}

/** A repo holding v1 under `oci:<img>`, with `img` then replaced by a copy of v2 to corrupt. */
function setup(): Case {
  const i = n++;
  const img = join(root, `img-${i}`);
  execFileSync('cp', ['-a', good1, img]);
  const repo = newRepo(join(root, `repo-${i}`));
  const imgref = `oci:${img}`;
  run('image', 'pull', '--repo', repo, imgref);
  execFileSync('rm', ['-rf', img]);
  execFileSync('cp', ['-a', good2, img]);
  return { repo, img, imgref, imageRef: `ostree/container/image/${escapeRef(imgref)}`, before: repoState(repo), beforeRefs: refs(repo) };
}

type T = Parameters<Parameters<typeof t.test>[1]>[0];

function expectUntouched(t: T, c: Case, r: { status: number; stderr: string }, pattern: RegExp): void {
  t.not(r.status, 0, 'exit status ≠ 0');
  t.match(r.stderr, pattern, 'the error names what failed');
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  t.same(refs(c.repo), c.beforeRefs, 'no ref written or changed');
  t.equal(refs(c.repo)[c.imageRef], src.commit, 'image ref still at v1');
  t.equal(repoState(c.repo), c.before, 'no object files added');
  t.match(ostreeFsck(c.repo), /no errors/, 'ostree fsck clean');
}

function expectRepull(t: T, c: Case): void {
  execFileSync('rm', ['-rf', c.img]);
  execFileSync('cp', ['-a', good2, c.img]);
  const r = runJson<{ commit: string; layersFetched: number }>('image', 'pull', '--repo', c.repo, c.imgref);
  t.equal(r.commit, v2, 're-pull of the good v2 succeeds');
  t.equal(r.layersFetched, 2);
  t.equal(refs(c.repo)[c.imageRef], v2);
  t.equal(cli(['verify', '--repo', c.repo, c.imageRef, '--pubkeys', src.pub, '--composefs']).status, 0, 'and verifies');
  t.match(ostreeFsck(c.repo), /no errors/);
}

/** Flip one hex digit inside `needle`'s occurrence in a blob, keeping its size. */
function flipInBlob(path: string, needle: string): void {
  const b = readFileSync(path);
  const at = b.indexOf(needle);
  if (at < 0) throw new Error(`${needle} not in ${path}`);
  b[at] = b[at] === 0x30 ? 0x31 : 0x30;
  writeFileSync(path, b);
}

t.test('layout of the test images', async (t) => {
  t.ok(changedChunk > 0 && sameChunk > 0, `changed chunk ${changedChunk}, unchanged chunk ${sameChunk}`);
});

t.test('manifest bytes do not match the manifest digest', async (t) => {
  const c = setup();
  const v = readLayout(c.img);
  flipInBlob(blobPath(c.img, v.manifestDigest), v2);
  expectUntouched(t, c, cli(['image', 'pull', '--repo', c.repo, c.imgref]), new RegExp(`manifest ${v.manifestDigest}.*digest mismatch`));
  expectRepull(t, c);
});

t.test('config bytes do not match the config digest', async (t) => {
  const c = setup();
  const v = readLayout(c.img);
  flipInBlob(blobPath(c.img, v.manifest.config.digest), v2);
  expectUntouched(t, c, cli(['image', 'pull', '--repo', c.repo, c.imgref]), new RegExp(`config ${v.manifest.config.digest}.*digest mismatch`));
  expectRepull(t, c);
});

t.test('unknown layer media type', async (t) => {
  const c = setup();
  const v = readLayout(c.img);
  const last = v.manifest.layers.length - 1;
  v.manifest.layers[last]!.mediaType = 'application/vnd.example.unknown.v1+tar';
  writeConfigAndManifest(c.img, v);
  expectUntouched(t, c, cli(['image', 'pull', '--repo', c.repo, c.imgref]), new RegExp(`layer ${last} .*unsupported media type "application/vnd\\.example\\.unknown\\.v1\\+tar"`));
  expectRepull(t, c);
});

t.test('a layer that fails re-checksumming (object bytes changed, digests recomputed)', async (t) => {
  const c = setup();
  // Corrupt an object of a chunk v1 already had: the store holds a good copy, the stream's copy is bad.
  let victim = '';
  await rewriteLayer(c.img, sameChunk, (entries) => {
    const e = entries.find((x) => x.type === 'file' && x.name.endsWith('.file') && x.data.length > 0)!;
    victim = e.name;
    e.data = Buffer.from(e.data);
    e.data[0] = e.data[0]! ^ 0xff;
  });
  const oid = victim.replace(/^.*objects\/(..)\/(.{62})\.file$/, '$1$2');
  t.match(oid, /^[0-9a-f]{64}$/);
  const v = readLayout(c.img);
  t.notOk(v1Digests.has(v.manifest.layers[sameChunk]!.digest), 'the rewritten chunk has a new digest (so it is read)');
  expectUntouched(t, c, cli(['image', 'pull', '--repo', c.repo, c.imgref]), new RegExp(`file object checksum mismatch at layer ${sameChunk} .*expected ${oid}`));
  expectRepull(t, c);
});

t.test('a derived layer with a traversal path', async (t) => {
  const c = setup();
  const bad = writeTarEntries([{ name: 'usr/../../etc/passwd', type: 'file', mode: 0o644, uid: 0, gid: 0, data: Buffer.from('x') }]);
  execFileSync('rm', ['-rf', c.img]);
  await buildDerivedImage(`oci:${good2}`, c.imgref, [bad]);
  expectUntouched(t, c, cli(['image', 'pull', '--repo', c.repo, c.imgref]), /invalid path "usr\/\.\.\/\.\.\/etc\/passwd"/);
  expectRepull(t, c);
});

/**
 * A loopback HTTP proxy in front of the registry that, when `stall` names a blob digest, sends
 * the headers and the first half of that blob and then never sends the rest.
 */
async function stallingProxy(t: T, upstream: string): Promise<{ host: string; stall: { digest: string | null }; stalled: Promise<void> }> {
  const stall: { digest: string | null } = { digest: null };
  let onStalled!: () => void;
  const stalled = new Promise<void>((r) => (onStalled = r));
  const server = http.createServer((req, res) => {
    const up = http.request({ host: '127.0.0.1', port: Number(upstream.split(':')[1]), path: req.url, method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      if (stall.digest && req.url?.endsWith(`/blobs/${stall.digest}`)) {
        const total = Number(ur.headers['content-length']);
        let sent = 0;
        ur.on('data', (chunk: Buffer) => {
          const room = Math.floor(total / 2) - sent;
          if (room > 0) {
            res.write(chunk.subarray(0, room));
            sent += Math.min(room, chunk.length);
            if (sent >= Math.floor(total / 2)) onStalled();
          }
        });
        return;
      }
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('clientError', (_e, sock) => sock.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return { host: `127.0.0.1:${port}`, stall, stalled };
}

/** The CLI without blocking the event loop (the proxy lives in this process). */
async function cliAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += String(d)));
  child.stderr.on('data', (d) => (stderr += String(d)));
  const [status] = (await once(child, 'close')) as [number | null];
  return { status, stdout, stderr };
}

async function pullJson(args: string[]): Promise<{ commit: string; layersFetched: number }> {
  const r = await cliAsync(['image', 'pull', ...args, '--json']);
  if (r.status !== 0) throw new Error(`image pull ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { commit: string; layersFetched: number };
}

t.test('a pull killed in the middle of a layer download (SIGKILL from outside)', async (t) => {
  const registry = await startRegistry(t);
  const proxy = await stallingProxy(t, registry);
  const direct = `docker://${registry}/bad/os:latest`;
  const imgref = `docker://${proxy.host}/bad/os:latest`;
  const imageRef = `ostree/container/image/${escapeRef(imgref)}`;
  run('encapsulate', '--repo', src.repo, 'main', direct, '--max-layers', '3', '--no-tls-verify');
  const repo = newRepo(join(root, 'repo-killed'));
  t.equal((await pullJson(['--repo', repo, imgref, '--no-tls-verify'])).commit, src.commit, 'v1 pulled through the proxy');
  const rawLayers = (): string[] =>
    (JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', direct], { encoding: 'utf8' })) as { layers: Array<{ digest: string }> }).layers.map((l) => l.digest);
  const m1 = new Set(rawLayers());
  run('encapsulate', '--repo', src.repo, 'v2', direct, '--max-layers', '3', '--no-tls-verify');
  const m2 = rawLayers();
  const before = repoState(repo);
  const beforeRefs = refs(repo);
  const stallAt = m2.findIndex((d, i) => i > 0 && !m1.has(d));
  t.ok(stallAt > 0, `stalling layer ${stallAt}`);
  proxy.stall.digest = m2[stallAt]!;
  const child = spawn(process.execPath, [CLI, 'image', 'pull', '--repo', repo, imgref, '--no-tls-verify'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += String(d)));
  const exited = once(child, 'exit');
  await Promise.race([
    proxy.stalled,
    exited.then(() => {
      throw new Error(`pull exited before the stalled layer: ${stderr}`);
    }),
    new Promise<never>((_, rej) => setTimeout(() => rej(new Error('the stalled layer was never requested')), 180_000)),
  ]);
  await new Promise((r) => setTimeout(r, 1000));
  t.equal(child.exitCode, null, `still running, half-way through layer ${stallAt} ${stderr}`);
  child.kill('SIGKILL');
  const [, sig] = await exited;
  t.equal(sig, 'SIGKILL', 'killed');
  t.same(refs(repo), beforeRefs, 'no ref written or changed');
  t.equal(refs(repo)[imageRef], src.commit, 'image ref still at v1');
  t.equal(repoState(repo), before, 'no object files added');
  t.match(ostreeFsck(repo), /no errors/, 'ostree fsck clean');
  proxy.stall.digest = null;
  const r = await pullJson(['--repo', repo, imgref, '--no-tls-verify']);
  t.equal(r.commit, v2, 're-pull succeeds');
  t.equal(r.layersFetched, 2);
  t.equal(cli(['verify', '--repo', repo, imageRef, '--pubkeys', src.pub, '--composefs']).status, 0, 'and verifies');
  t.match(ostreeFsck(repo), /no errors/);
});

t.test('a pull killed at several points inside the import (OSTREE_OCI_CRASH_AFTER)', async (t) => {
  for (const n of [1, 8, 30]) {
    const c = setup();
    const r = cli(['image', 'pull', '--repo', c.repo, c.imgref], { env: { OSTREE_OCI_CRASH_AFTER: String(n) } });
    t.equal(r.status, -1, `killed at crash point ${n} (status ${r.status})`);
    t.same(refs(c.repo), c.beforeRefs, 'no ref written or changed');
    t.equal(repoState(c.repo), c.before, 'no object files added');
    t.match(ostreeFsck(c.repo), /no errors/, 'ostree fsck clean');
    expectRepull(t, c);
  }
});

t.test('sanity: the corruption helpers leave a pullable image when nothing is changed', async (t) => {
  const c = setup();
  await rewriteLayer(c.img, sameChunk, () => {});
  const entries = await readTarEntries(readLayerTar(c.img, sameChunk));
  t.ok(entries.length > 0);
  const r = runJson<{ commit: string }>('image', 'pull', '--repo', c.repo, c.imgref);
  t.equal(r.commit, v2, 'a re-packed but unmodified layer imports');
});
