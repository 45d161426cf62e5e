/**
 * Writing images when things go wrong: the blobs a writer stores end up correct even over a
 * damaged file of the same name and size; a failed or aborted write leaves the destination as it
 * was (no new directories, no blobs, nothing in an existing layout) and names the destination the
 * caller gave, not the temporary layout behind it; the cleanup registry that an interrupted CLI
 * runs removes the same things.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { pendingInterruptCleanups, runInterruptCleanup } from '../src/cleanup.js';
import { createImageWriter, digestHex, openImage, rewriteManifest, type ImageWriter } from '../src/oci/index.js';
import { collect, makeTar, pseudoRandom, sha256, streamOf, tempDir } from './oci-helpers.js';

const CONFIG = { architecture: 'amd64', os: 'linux' };

/** Every path under `dir` (hidden ones too) with the sha256 of each file: "as it was" means equal snapshots. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string): void => {
    for (const n of readdirSync(p, { withFileTypes: true })) {
      const full = join(p, n.name);
      const rel = relative(dir, full);
      if (n.isDirectory()) {
        out[`${rel}/`] = 'dir';
        walk(full);
      } else out[rel] = createHash('sha256').update(readFileSync(full)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

/** A tar stream that yields `good` bytes and then fails, like a source repository with a missing object. */
function failingTar(good: Buffer, message = 'source object missing'): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(good);
      } else this.destroy(new Error(message));
    },
  });
}

async function writeImage(ref: string, tars: Buffer[]): Promise<string> {
  const w = await createImageWriter(ref);
  for (const b of tars) await w.addLayer(streamOf(b), { compression: 'gzip' });
  return (await w.commit({ config: CONFIG })).manifestDigest;
}

/** Start an image whose second layer fails; returns the error of commit after abort(). */
async function failedWrite(ref: string, tars: Buffer[]): Promise<Error> {
  const w: ImageWriter = await createImageWriter(ref);
  try {
    await w.addLayer(streamOf(tars[0]!), { compression: 'gzip' });
    await w.addLayer(failingTar(tars[1]!.subarray(0, 4096)), { compression: 'gzip' });
    await w.commit({ config: CONFIG });
  } catch (e) {
    await w.abort();
    return e as Error;
  }
  throw new Error('the write did not fail');
}

let tars: Buffer[];
t.before(async () => {
  tars = [
    await makeTar([{ name: 'usr', type: 'dir' }, { name: 'usr/big', type: 'file', content: pseudoRandom(400_000, 5) }]),
    await makeTar([{ name: 'etc', type: 'dir' }, { name: 'etc/conf', type: 'file', content: 'x'.repeat(50_000) }]),
  ];
});

const blobFile = (layout: string, digest: string): string => join(layout, 'blobs', 'sha256', digestHex(digest));
const hashOf = (file: string): string => sha256(readFileSync(file));

/** Flip one byte in the middle of a file: same name, same size, wrong bytes. */
function rot(file: string): void {
  const b = readFileSync(file);
  b[b.length >> 1] ^= 0xff;
  writeFileSync(file, b);
}

t.test('a damaged blob with the right name and size is replaced by the verified new bytes', async (t) => {
  const dir = await tempDir(t);
  const layout = join(dir, 'img');
  await writeImage(`oci:${layout}:one`, tars);
  const first = await openImage(`oci:${layout}:one`);
  const layer0 = first.layers[0]!.digest;
  const config = first.manifest.config.digest;
  await first.close();
  rot(blobFile(layout, layer0));
  rot(blobFile(layout, config));
  t.not(hashOf(blobFile(layout, layer0)), layer0, 'the layer blob is damaged');

  // addLayer (the blob is written and then moved into place) and addJson (the config: an
  // existing blob is only reused when its bytes hash to its name)
  await writeImage(`oci:${layout}:two`, tars);
  t.equal(hashOf(blobFile(layout, layer0)), layer0, 'layer blob repaired');
  t.equal(hashOf(blobFile(layout, config)), config, 'config blob repaired');
  const img = await openImage(`oci:${layout}:two`);
  t.teardown(() => img.close());
  for (let i = 0; i < tars.length; i++) t.ok((await collect(img.openLayer(i))).equals(tars[i]!), `layer ${i} reads back`);

  // addBlob with an expected digest (rewriteManifest, seal): copied from the source when the
  // destination's file of that name is damaged
  const other = join(dir, 'other');
  await writeImage(`oci:${other}:x`, tars);
  rot(blobFile(other, layer0));
  await rewriteManifest(`oci:${layout}:two`, `oci:${other}:y`, (a) => ({ ...a, copied: '1' }));
  t.equal(hashOf(blobFile(other, layer0)), layer0, 'copied layer blob repaired');
  t.equal(pendingInterruptCleanups(), 0, 'nothing left registered for interruptions');
});

t.test('a failed write into a new oci: directory leaves no directory', async (t) => {
  const dir = await tempDir(t);
  const before = pendingInterruptCleanups();
  const e = await failedWrite(`oci:${dir}/new/nested/img:v1`, tars);
  t.match(e.message, new RegExp(`^oci:${dir}/new/nested/img: writing gzip layer: source object missing`));
  t.notOk(existsSync(join(dir, 'new', 'nested', 'img')), 'layout directory removed');
  // the parents are the caller's: oci: creates only the layout directory's path as mkdir -p does,
  // and removes it from the first directory it created
  t.same(readdirSync(dir), [], 'nothing created under the temp dir remains');
  t.equal(pendingInterruptCleanups(), before, 'nothing left registered for interruptions');
});

t.test('a failed write into an existing layout leaves every file as it was', async (t) => {
  const dir = await tempDir(t);
  const layout = join(dir, 'img');
  await writeImage(`oci:${layout}:old`, [tars[1]!]);
  const was = snapshot(layout);
  const e = await failedWrite(`oci:${layout}:new`, tars);
  t.match(e.message, /writing gzip layer: source object missing/);
  t.same(snapshot(layout), was, 'same files, same bytes (the new layer blob was removed)');

  // a blob that was already there before the failed write stays
  const w = await createImageWriter(`oci:${layout}:new`);
  await w.addLayer(streamOf(tars[1]!), { compression: 'gzip' });
  await w.abort();
  t.same(snapshot(layout), was, 'an existing blob written again is kept');
});

t.test('an existing layout that cannot be updated is refused before anything is written', async (t) => {
  const dir = await tempDir(t);
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['garbage index.json', { 'oci-layout': '{"imageLayoutVersion":"1.0.0"}', 'index.json': 'garbage\n' }, /index\.json.*(JSON|json)/],
    ['index.json of the wrong shape', { 'oci-layout': '{"imageLayoutVersion":"1.0.0"}', 'index.json': '{"schemaVersion":2}' }, /index\.json/],
    ['garbage oci-layout', { 'oci-layout': 'nope' }, /oci-layout is not valid JSON/],
    ['another layout version', { 'oci-layout': '{"imageLayoutVersion":"2.0.0"}' }, /imageLayoutVersion is not "1\.0\.0"/],
  ];
  for (const [what, files, pattern] of cases) {
    const layout = join(dir, what.replace(/\W+/g, '-'));
    await import('node:fs/promises').then((fs) => fs.mkdir(layout));
    for (const [n, c] of Object.entries(files)) writeFileSync(join(layout, n), c);
    const was = snapshot(layout);
    await t.rejects(createImageWriter(`oci:${layout}:x`), { message: pattern }, what);
    await t.rejects(createImageWriter(`oci:${layout}:x`), { message: new RegExp(`^oci:${layout}`) }, `${what}: names the layout`);
    t.same(snapshot(layout), was, `${what}: layout unchanged (no blobs/, no files)`);
  }
  const file = join(dir, 'a-file');
  writeFileSync(file, 'not a directory');
  await t.rejects(createImageWriter(`oci:${file}`), { message: /a-file exists and is not a directory/ });
  t.equal(readFileSync(file, 'utf8'), 'not a directory');
});

t.test('oci-archive: a failed write names the archive, and leaves no parents, temp layout or partial archive', async (t) => {
  const dir = await tempDir(t);
  const target = join(dir, 'new', 'sub', 'img.tar');
  const e = await failedWrite(`oci-archive:${target}:v1`, tars);
  t.match(e.message, new RegExp(`^oci-archive:${target}: writing gzip layer: source object missing`), 'names the archive');
  t.notMatch(e.message, /\.layout-/, 'not the temporary layout');
  t.same(readdirSync(dir), [], 'the parent directories it created are gone');

  // an existing archive stays byte for byte, and nothing else appears next to it
  const existing = join(dir, 'old.tar');
  await writeImage(`oci-archive:${existing}:v1`, [tars[1]!]);
  const was = snapshot(dir);
  await failedWrite(`oci-archive:${existing}:v2`, tars);
  t.same(snapshot(dir), was, 'archive unchanged, no temporaries');
});

t.test('runInterruptCleanup removes what a write under way created, and only that', async (t) => {
  const dir = await tempDir(t);
  const existing = join(dir, 'existing');
  await writeImage(`oci:${existing}:old`, [tars[1]!]);
  const was = snapshot(existing);
  const archive = join(dir, 'arch', 'img.tar');
  const targets = [`oci:${existing}:new`, `oci:${dir}/fresh`, `oci-archive:${archive}`];
  const writers: ImageWriter[] = [];
  const stalled: Readable[] = [];
  for (const ref of targets) {
    const w = await createImageWriter(ref);
    writers.push(w);
    await w.addLayer(streamOf(tars[0]!), { compression: 'gzip' }); // a finished blob
    const s = new Readable({ read() {} }); // and one being written, never ending
    s.push(tars[1]!.subarray(0, 10_000));
    stalled.push(s);
    void w.addLayer(s, { compression: 'gzip' }).catch(() => {});
  }
  // wait until every stalled layer has its temp file
  const temps = (): number =>
    [existing, join(dir, 'fresh')].reduce((n, d) => n + readdirSync(d).filter((f) => f.startsWith('.ostree-oci-tmp-')).length, 0) +
    (existsSync(join(dir, 'arch')) ? readdirSync(join(dir, 'arch')).filter((f) => f.startsWith('.img.tar.layout-')).length : 0);
  for (let i = 0; i < 500 && temps() < 3; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(temps(), 3, 'temp files and the temp layout exist while the writes are under way');
  t.ok(pendingInterruptCleanups() > 0, 'registered');

  runInterruptCleanup();
  t.equal(pendingInterruptCleanups(), 0, 'the registry is empty afterwards');
  t.same(snapshot(existing), was, 'existing layout as it was');
  t.notOk(existsSync(join(dir, 'fresh')), 'new layout removed');
  t.notOk(existsSync(join(dir, 'arch')), 'the archive’s new parent directory and temp layout removed');
  for (const s of stalled) s.destroy();
  for (const w of writers) await w.abort();
  t.same(readdirSync(dir), ['existing']);
  t.same(snapshot(existing), was);
});

t.test('a committed write is kept by a later interruption cleanup', async (t) => {
  const dir = await tempDir(t);
  await writeImage(`oci:${dir}/img:v1`, tars);
  await writeImage(`oci-archive:${dir}/a/b.tar:v1`, tars);
  const was = snapshot(dir);
  runInterruptCleanup();
  t.same(snapshot(dir), was);
  t.ok(statSync(join(dir, 'a', 'b.tar')).isFile());
});
