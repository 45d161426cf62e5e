/**
 * Writing images when things go wrong: the blobs a writer stores end up correct even over a
 * damaged file of the same name and size.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { createImageWriter, digestHex, openImage, rewriteManifest } from '../src/oci/index.js';
import { collect, makeTar, pseudoRandom, sha256, streamOf, tempDir } from './oci-helpers.js';

const CONFIG = { architecture: 'amd64', os: 'linux' };

async function writeImage(ref: string, tars: Buffer[]): Promise<string> {
  const w = await createImageWriter(ref);
  for (const b of tars) await w.addLayer(streamOf(b), { compression: 'gzip' });
  return (await w.commit({ config: CONFIG })).manifestDigest;
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
});
