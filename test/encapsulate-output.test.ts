/**
 * Where `encapsulate` writes, after it failed or was stopped.
 *
 * A failure (here: a source repository missing an object) exits non-zero with an error naming
 * the destination the user gave (never the temporary layout behind an archive or a push), and
 * leaves the destination as it was: no new directory, no blobs in an existing layout, nothing
 * next to an archive.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { makeSampleRepo, type SampleRepo } from './container-helpers.js';
import { cli, ensureBuilt, fixture, tmp } from './helpers/tmp.js';

ensureBuilt();

const root = tmp(t, 'ostree-oci-output-');
const base = join(root, 'base');
const broken = join(root, 'broken-repo');
let s!: SampleRepo;
fixture(t, 'sample repo with a 48 MiB file, a copy missing that file, and a layout holding one image', () => {
  s = makeSampleRepo(root, { bigFileMiB: 48 });
  const r = cli(['encapsulate', '--repo', s.repo, 'main', `oci:${base}:first`, '--compression-fast']);
  if (r.status !== 0) throw new Error(`encapsulate: exit ${r.status}: ${r.stderr}`);
  cpSync(s.repo, broken, { recursive: true });
  const objects = join(broken, 'objects');
  const big = readdirSync(objects).flatMap((d) => readdirSync(join(objects, d)).map((f) => join(objects, d, f))).filter((f) => f.endsWith('.file') && statSync(f).size > 40 << 20);
  if (big.length !== 1) throw new Error(`expected one big content object, found ${big.length}`);
  rmSync(big[0]!);
});

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string): void => {
    for (const n of readdirSync(p, { withFileTypes: true })) {
      const full = join(p, n.name);
      if (n.isDirectory()) {
        out[`${relative(dir, full)}/`] = 'dir';
        walk(full);
      } else out[relative(dir, full)] = createHash('sha256').update(readFileSync(full)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

t.test('a failed encapsulate names the destination and leaves it as it was', async (t) => {
  // a new oci: directory (and its new parent)
  const fresh = join(root, 'failed-new', 'img');
  let r = cli(['encapsulate', '--repo', broken, 'main', `oci:${fresh}:t`]);
  t.equal(r.status, 1, 'exit 1');
  t.match(r.stderr, new RegExp(`^error: oci:${fresh}: writing gzip layer: `), 'names the layout');
  t.notOk(existsSync(join(root, 'failed-new')), 'no directory left behind');

  // an existing layout whose index.json cannot be read: refused before any blob is written (the
  // default gzip level gives other blobs than the fixture's --compression-fast)
  const garbage = join(root, 'garbage-index');
  cpSync(base, garbage, { recursive: true });
  writeFileSync(join(garbage, 'index.json'), 'garbage\n');
  const was = snapshot(garbage);
  r = cli(['encapsulate', '--repo', s.repo, 'main', `oci:${garbage}:x`]);
  t.equal(r.status, 1);
  t.match(r.stderr, new RegExp(`^error: oci:${garbage} index\\.json: `), 'names index.json of the layout');
  t.same(snapshot(garbage), was, 'layout as it was: no blobs written into it');

  // oci-archive: with new parents: the message names the archive, not the temporary layout
  const target = join(root, 'failed-arch', 'sub', 'img.tar');
  r = cli(['encapsulate', '--repo', broken, 'main', `oci-archive:${target}:t`]);
  t.equal(r.status, 1);
  t.match(r.stderr, new RegExp(`^error: oci-archive:${target}: writing gzip layer: `), 'names the archive');
  t.notMatch(r.stderr, /\.layout-/, 'not the temporary layout');
  t.notOk(existsSync(join(root, 'failed-arch')), 'no parent directories left behind');
});
