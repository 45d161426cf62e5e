/**
 * Chunked images: the directory-subtree split (every object in exactly one chunk, at most N
 * chunks, a local change touches few layers), the jump hash it relies on, and `--contentmeta`
 * layouts as ostree-ext writes them.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Repo } from '../src/ostree/repo.js';
import { encapsulate } from '../src/container/encapsulate.js';
import { unencapsulate } from '../src/container/unencapsulate.js';
import { chunkByContentMeta, chunkBySubtrees, collectContent, jumpHash, MAX_CHUNKS, parseContentMeta } from '../src/container/chunking.js';
import { ostreeCommit, ostreeInit } from '../scripts/lib/sample-tree.js';
import { makeSampleRepo, readLayerTar, readLayout, readTarEntries } from './container-helpers.js';
import { ostreeFsck, tmp } from './helpers/tmp.js';

t.test('jump consistent hash: in range, and growing n→n+1 only moves keys to bucket n', async (t) => {
  let moved = 0;
  const bad: string[] = [];
  for (let k = 0; k < 2000; k++) {
    const key = BigInt(k) * 0x9e3779b97f4a7c15n;
    let prev = jumpHash(key, 1);
    if (prev !== 0) bad.push(`key ${k}: ${prev} for n=1`);
    for (let n = 2; n <= 40; n++) {
      const b = jumpHash(key, n);
      if (b < 0 || b >= n) bad.push(`key ${k}: out of range ${b} for n=${n}`);
      if (b !== prev) {
        moved++;
        if (b !== n - 1) bad.push(`key ${k} moved from ${prev} to ${b} when n became ${n}`);
      }
      prev = b;
    }
  }
  t.same(bad.slice(0, 5), [], 'no key out of range or moved elsewhere than the new bucket');
  // Expected moves: sum over n of 2000/n ≈ 2000 * (H40 - 1) ≈ 6557.
  t.ok(moved > 5500 && moved < 7600, `about 1/n of the keys move (${moved})`);
});

t.test('subtree chunking: every object once, at most N chunks, deterministic', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d, { bigFileMiB: 8 });
  const repo = Repo.open(s.repo);
  t.teardown(() => repo.close());
  const commit = repo.loadCommit(s.commit);
  const { mapping, tree } = collectContent(repo, commit, true);
  for (const n of [1, 2, 3, 5, 8, 64]) {
    const chunks = chunkBySubtrees(tree, mapping, n);
    t.ok(chunks.length >= 1 && chunks.length <= n, `${chunks.length} chunks for n=${n}`);
    const seen = new Map<string, number>();
    for (const c of chunks) for (const k of c.mapping.keys()) seen.set(k, (seen.get(k) ?? 0) + 1);
    t.equal(seen.size, mapping.size, `n=${n}: every object in a chunk`);
    t.ok([...seen.values()].every((v) => v === 1), `n=${n}: no object twice`);
    t.equal(chunks.reduce((a, c) => a + c.size, 0), tree.total);
    const again = chunkBySubtrees(tree, mapping, n);
    t.same(again.map((c) => [...c.mapping.keys()]), chunks.map((c) => [...c.mapping.keys()]), `n=${n}: deterministic`);
  }
  // Units: small subtrees whole; a directory whose own files exceed the unit size is split per file.
  const units = chunkBySubtrees(tree, mapping, 8).flatMap((c) => c.components);
  t.ok(units.includes('/usr/lib/big.bin'), 'the 8 MiB file is a unit of its own');
  t.ok(units.includes('/usr/lib/4096.bin'), 'and so are its neighbours in the oversized /usr/lib');
  t.ok(units.includes('/usr/lib/modules'), 'a small subtree is one unit');
  t.ok(units.includes('/usr/share'), '/usr/share is small enough to be one unit');
});

t.test('a change in one part of the tree changes few layers', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d, { bigFileMiB: 8 });
  const repo = Repo.open(s.repo);
  t.teardown(() => repo.close());
  const v1 = await encapsulate(repo, s.commit, `oci:${join(d, 'v1')}`, { maxLayers: 8 });
  // Edit one file, commit again.
  appendFileSync(join(s.tree, 'usr/share/doc/README'), 'one more line\n');
  const c2 = ostreeCommit(s.repo, s.tree, { subject: 'v2' });
  const v2 = await encapsulate(repo, c2, `oci:${join(d, 'v2')}`, { maxLayers: 8 });
  const ids1 = new Set(v1.layers.map((l) => l.diffId));
  const changed2 = v2.layers.filter((l) => !ids1.has(l.diffId));
  t.equal(v2.layers.length, v1.layers.length, 'same number of layers');
  t.equal(changed2.length, 2, 'commit layer + the one chunk with /usr/share/doc');
  t.ok(changed2.some((l) => l.name === 'v2'), 'the commit layer is one of them');
  t.ok(changed2.some((l) => l.components.some((c) => '/usr/share/doc/README'.startsWith(c.replace(/\/$/, '')))));
  // A new directory with a file: a few layers at most.
  mkdirSync(join(s.tree, 'usr/share/newdir'));
  writeFileSync(join(s.tree, 'usr/share/newdir/new-file'), 'new\n');
  const c3 = ostreeCommit(s.repo, s.tree, { subject: 'v3' });
  const v3 = await encapsulate(repo, c3, `oci:${join(d, 'v3')}`, { maxLayers: 8 });
  const ids2 = new Set(v2.layers.map((l) => l.diffId));
  const changed3 = v3.layers.filter((l) => !ids2.has(l.diffId));
  t.ok(changed3.length <= 3, `${changed3.length} of ${v3.layers.length} layers changed`);

  // Importing v3 into a repo that has v1: objects already there are re-verified, the rest written.
  const dst = join(d, 'dst');
  ostreeInit(dst, 'bare-user');
  const dr = Repo.open(dst);
  t.teardown(() => dr.close());
  t.equal((await unencapsulate(dr, `oci:${join(d, 'v1')}`, { ref: 'v1' })).commit, s.commit);
  const r3 = await unencapsulate(dr, `oci:${join(d, 'v3')}`, { ref: 'v3' });
  t.equal(r3.commit, c3);
  t.ok(r3.stats.filesAlreadyPresent > 0 && r3.stats.filesWritten > 0);
  t.match(ostreeFsck(dst), /no errors/);
});

t.test('--contentmeta: one layer per component, then the reserved layer', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d);
  const repo = Repo.open(s.repo);
  t.teardown(() => repo.close());
  const { mapping } = collectContent(repo, repo.loadCommit(s.commit), false);
  const map: Record<string, string> = {};
  for (const [c, e] of mapping) {
    if (e.paths.some((p) => p.startsWith('/usr/bin/'))) map[c] = 'pkg-bin';
    else if (e.paths.some((p) => p.startsWith('/usr/lib/'))) map[c] = 'pkg-lib';
  }
  const meta = parseContentMeta(
    { version: 1, created: '2024-02-03T04:05:06Z', labels: { 'from.meta': 'yes' }, layers: { 'pkg-bin': 'bin tools', 'pkg-lib': 'libraries' }, mapping: map },
    'test',
  );
  const dir = join(d, 'img');
  const r = await encapsulate(repo, s.commit, `oci:${dir}`, { contentmeta: meta, labels: { 'from.cli': 'yes' } });
  t.same(r.layers.map((l) => l.name), ['sample', 'pkg-bin', 'pkg-lib', 'Reserved for new packages']);
  const v = readLayout(dir);
  t.same(
    v.manifest.layers.map((l) => (l as { annotations?: Record<string, string> }).annotations?.['ostree.components']),
    [undefined, 'bin tools', 'libraries', ''],
  );
  t.equal(v.config['created'], '2024-02-03T04:05:06Z');
  t.equal(v.config.config!.Labels!['from.meta'], 'yes');
  t.equal(v.config.config!.Labels!['from.cli'], 'yes');
  t.equal(v.config.config!.Labels!['ostree.final-diffid'], v.config.rootfs.diff_ids[3], 'final-diffid = the reserved layer');
  const files = async (i: number): Promise<string[]> =>
    (await readTarEntries(readLayerTar(dir, i))).filter((e) => !e.name.startsWith('sysroot') && e.type !== 'directory').map((e) => e.name);
  t.ok((await files(1)).every((n) => n.startsWith('usr/bin/')));
  t.ok((await files(2)).every((n) => n.startsWith('usr/lib/')));
  t.same(await files(3), [], 'reserved layer: skeleton only');
  t.ok((await files(0)).includes('usr/share/doc/README'), 'unmapped objects stay in the commit layer');
  const dst = join(d, 'dst');
  ostreeInit(dst, 'bare-user');
  const dr = Repo.open(dst);
  t.teardown(() => dr.close());
  t.equal((await unencapsulate(dr, `oci:${dir}`, { requireCommitmeta: true })).commit, s.commit);
  t.ok(dr.readCommitMetaBytes(s.commit)!.equals(s.commitmeta));
  t.throws(() => parseContentMeta({ version: 2, layers: {}, mapping: {} }, 'x'), /unsupported metadata version 2/);
  t.throws(() => parseContentMeta({ version: 1, layers: {}, mapping: { abc: 'nope' } }, 'x'), /names layer "nope", which is not in "layers"/);
  t.equal(execFileSync('ostree', ['fsck', `--repo=${dst}`], { encoding: 'utf8' }).includes('no errors'), true);
});

t.test('--contentmeta: components without objects are left out, and --max-layers N means at most N chunks', async (t) => {
  const d = tmp(t);
  const s = makeSampleRepo(d);
  const repo = Repo.open(s.repo);
  t.teardown(() => repo.close());
  const { mapping } = collectContent(repo, repo.loadCommit(s.commit), false);
  const map: Record<string, string> = { ['0'.repeat(64)]: 'ghost' };
  for (const [c, e] of mapping) {
    if (e.paths.some((p) => p.startsWith('/usr/bin/'))) map[c] = 'pkg-bin';
    else if (e.paths.some((p) => p.startsWith('/usr/lib/'))) map[c] = 'pkg-lib';
  }
  // 'empty' has no mapping entry, 'ghost' only an object that is not in the commit: either would be
  // a skeleton-only chunk with the reserved chunk's diffid.
  const layers = { empty: 'nothing', 'pkg-bin': 'bin tools', ghost: 'not here', 'pkg-lib': 'libraries' };
  const meta = parseContentMeta({ version: 1, layers, mapping: map }, 'test');
  const dst = join(d, 'dst');
  ostreeInit(dst, 'bare-user');
  const dr = Repo.open(dst);
  t.teardown(() => dr.close());
  const cases: Array<[number | undefined, string[]]> = [
    [undefined, ['pkg-bin', 'pkg-lib', 'Reserved for new packages']],
    [1, ['pkg-bin and pkg-lib']],
    [2, ['pkg-bin and pkg-lib', 'Reserved for new packages']],
    [3, ['pkg-bin', 'pkg-lib', 'Reserved for new packages']],
  ];
  for (const [n, names] of cases) {
    const dir = join(d, `img-${n ?? 'all'}`);
    const r = await encapsulate(repo, s.commit, `oci:${dir}`, { contentmeta: meta, ...(n === undefined ? {} : { maxLayers: n }) });
    t.same(r.layers.map((l) => l.name), ['sample', ...names], `max-layers ${n ?? 'unset'}: layers`);
    const ids = readLayout(dir).config.rootfs.diff_ids;
    t.equal(new Set(ids).size, ids.length, `max-layers ${n ?? 'unset'}: no two layers share a diffid`);
    const imported = await unencapsulate(dr, `oci:${dir}`).then((x) => x.commit, (e: Error) => e.message);
    t.equal(imported, s.commit, `max-layers ${n ?? 'unset'}: imports`);
  }
  // No component holds an object of the commit: a single-layer image, as ostree-ext writes it.
  const none = parseContentMeta({ version: 1, layers: { empty: 'nothing', ghost: 'not here' }, mapping: { ['0'.repeat(64)]: 'ghost' } }, 'test');
  const r = await encapsulate(repo, s.commit, `oci:${join(d, 'none')}`, { contentmeta: none });
  t.same(r.layers.map((l) => l.name), ['sample']);
  t.equal((await unencapsulate(dr, `oci:${join(d, 'none')}`)).commit, s.commit);
  t.match(ostreeFsck(dst), /no errors/);
});

t.test('--contentmeta components are ordered by id bytes, not by their order in the file', async (t) => {
  // Integer-like ids: JavaScript lists them first in ascending numeric order, whatever the file.
  const text = (order: string[]): string =>
    `{"version":1,"layers":{${order.map((id) => `"${id}":"component ${id}"`).join(',')}},"mapping":{${order.map((id, i) => `"${String(i + 1).padStart(64, '0')}":"${id}"`).join(',')}}}`;
  const mapping = new Map<string, { size: number; paths: string[] }>();
  for (let i = 1; i <= 4; i++) mapping.set(String(i).padStart(64, '0'), { size: 100, paths: [`/usr/f${i}`] });
  const names = (order: string[], max?: number): string[] => {
    const meta = parseContentMeta(JSON.parse(text(order)), 'test');
    return chunkByContentMeta(meta, mapping, max).chunks.map((c) => c.name);
  };
  const ids = ['zeta', '10', '2', 'é'];
  t.same(names(ids), ['10', '2', 'zeta', 'é', 'Reserved for new packages'], 'byte order of the ids');
  t.same(names([...ids].reverse()), names(ids), 'the same whatever the order in the file');
  t.same(names(ids, 3), ['10', '2 and zeta and é', 'Reserved for new packages'], 'the overflow takes the last ids');
});

t.test('--contentmeta with more components than layers: at most 64 chunks unless --max-layers says otherwise', async (t) => {
  // 100 components of one object each (the split needs only the mapping, no repository).
  const layers: Record<string, string> = {};
  const map: Record<string, string> = {};
  const mapping = new Map<string, { size: number; paths: string[] }>();
  for (let i = 0; i < 100; i++) {
    const id = `pkg-${String(i).padStart(3, '0')}`;
    const csum = i.toString(16).padStart(64, '0');
    layers[id] = `package ${i}`;
    map[csum] = id;
    mapping.set(csum, { size: 1000 + i, paths: [`/usr/lib/${id}`] });
  }
  const meta = parseContentMeta({ version: 1, layers, mapping: map }, 'test');
  const check = (n: number, got: ReturnType<typeof chunkByContentMeta>, what: string): void => {
    t.equal(got.chunks.length, n, `${what}: ${n} chunks`);
    t.equal(got.chunks.at(-1)!.name, 'Reserved for new packages', `${what}: the reserved chunk last`);
    t.same(got.chunks.slice(0, n - 2).map((c) => c.name), Object.keys(layers).slice(0, n - 2), `${what}: the first components one per chunk, in id order`);
    const merged = got.chunks[n - 2]!;
    t.equal(merged.name, `${100 - (n - 2)} components`, `${what}: the rest merged into one chunk`);
    t.same([...merged.mapping.keys()], Object.keys(map).slice(n - 2), `${what}: holding every remaining object`);
    t.equal(got.remainder.size, 0, `${what}: every object in a chunk`);
  };
  t.equal(MAX_CHUNKS, 64);
  check(64, chunkByContentMeta(meta, mapping), 'default');
  check(80, chunkByContentMeta(meta, mapping, 80), '--max-layers 80');
  const all = chunkByContentMeta(meta, mapping, 101);
  t.equal(all.chunks.length, 101, '--max-layers 101: every component its own chunk, plus the reserved one');
});
