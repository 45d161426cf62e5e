/**
 * Every GObject/GVariant/GBytes/GError the bindings receive is released: 100,000 object loads
 * (of each kind, plus failing calls) must not grow RSS by more than a few MiB.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ostreeCommit, ostreeInit, writeSampleTree } from '../scripts/lib/sample-tree.js';
import { ROOT, tmp } from './helpers/tmp.js';

const script = `
import { NativeRepo, ObjectType } from ${JSON.stringify(join(ROOT, 'dist/ostree-bindings/index.js'))};
const repo = NativeRepo.open(process.argv[1]);
const commit = repo.resolveRev('main');
const objs = repo.traverseCommit(commit);
const files = objs.filter((o) => o.type === ObjectType.FILE).map((o) => o.checksum);
const metas = objs.filter((o) => o.type !== ObjectType.FILE);
const buf = Buffer.alloc(65536);
function round(n) {
  for (let i = 0; i < n; i++) {
    const m = metas[i % metas.length];
    repo.loadVariant(m.type, m.checksum);
    const f = repo.loadFile(files[i % files.length]);
    if (f.stream) { f.stream.read(buf); f.stream.close(); }
    repo.readCommitDetachedMetadata(commit);
    try { repo.resolveRev('missing-' + (i % 10)); } catch {}
    if (i % 10 === 0) repo.traverseCommit(commit);
  }
}
const rss = () => { globalThis.gc(); globalThis.gc(); return process.memoryUsage().rss; };
round(10000);            // warm up allocators and JIT
const before = rss();
round(100000);
const after = rss();
process.stdout.write(JSON.stringify({ before, after }));
`;

t.test('100,000 object loads do not grow RSS', async (t) => {
  const d = tmp(t);
  writeSampleTree(join(d, 'tree'), { bigFileMiB: 1 });
  ostreeInit(join(d, 'repo'), 'bare-user');
  ostreeCommit(join(d, 'repo'), join(d, 'tree'));
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script, join(d, 'repo')], {
    encoding: 'utf8',
    timeout: 600_000,
  });
  t.equal(r.status, 0, r.stderr);
  const { before, after } = JSON.parse(r.stdout) as { before: number; after: number };
  const growthMiB = (after - before) / 1048576;
  t.comment(`RSS ${(before / 1048576).toFixed(1)} MiB → ${(after / 1048576).toFixed(1)} MiB`);
  t.ok(growthMiB < 4, `RSS growth ${growthMiB.toFixed(2)} MiB < 4 MiB`);
});
