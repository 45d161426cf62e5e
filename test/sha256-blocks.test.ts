/**
 * The SIMD SHA-256 kernel (ostree-bindings/native/sha256-4k.c) and the code that feeds it, in each
 * of its three modes — AVX-512 (16 lanes), AVX2 (8 lanes, forced with OSTREE_OCI_SHA256_LANES=8)
 * and Node's crypto (OSTREE_OCI_NATIVE_SHA256=0) — against Node's SHA-256 block by block, and
 * fs-verity digests through every hashing path against the real `fsverity digest`.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBuilt } from './helpers/tmp.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
ensureBuilt();
const dir = mkdtempSync(join(tmpdir(), 'sha256-blocks-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const dist = (p: string): string => JSON.stringify(join(ROOT, 'dist', p));

const cpuFlags = new Set((/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/));
const hasAvx2 = process.arch === 'x64' && cpuFlags.has('avx2');
const hasAvx512 = hasAvx2 && cpuFlags.has('avx512f') && cpuFlags.has('avx512bw') && cpuFlags.has('avx512vl');
const library = join(ROOT, 'ostree-bindings', 'native', 'libsha256-4k.so');

/** Run a module script in a child with extra environment; its stdout, parsed as JSON. */
function child(script: string, env: Record<string, string>): unknown {
  // Only the mode's own variables: not the ones this test run may have been started with.
  const base = { ...process.env };
  delete base.OSTREE_OCI_NATIVE_SHA256;
  delete base.OSTREE_OCI_SHA256_LANES;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...base, ...env },
    maxBuffer: 1 << 26,
  });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const MODES: Array<{ name: string; env: Record<string, string>; lanes: number }> = [
  { name: 'default', env: {}, lanes: hasAvx512 ? 16 : hasAvx2 ? 8 : 0 },
  { name: 'AVX2 forced', env: { OSTREE_OCI_SHA256_LANES: '8' }, lanes: hasAvx2 ? 8 : 0 },
  { name: "Node's crypto", env: { OSTREE_OCI_NATIVE_SHA256: '0' }, lanes: 0 },
];

// Block counts around every lane and run boundary; each hashed from an odd offset into a larger
// buffer, into an odd offset of the output.
const COUNTS = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 127, 128, 129, 300];
const data = randomBytes(310 * 4096 + 3);
const dataPath = join(dir, 'blocks.bin');
writeFileSync(dataPath, data);
const expected = COUNTS.map((n) => {
  const h: string[] = [];
  for (let i = 0; i < n; i++) h.push(createHash('sha256').update(data.subarray(3 + i * 4096, 3 + (i + 1) * 4096)).digest('hex'));
  return h.join('');
});

for (const mode of MODES) {
  t.test(`hashBlocks, ${mode.name}: equal to SHA-256 of each block`, async (t) => {
    const got = child(
      `import { hashBlocks, hashBlocksImplementation } from ${dist('ostree-bindings/sha256-blocks.js')};
import { readFileSync } from 'node:fs';
const data = readFileSync(${JSON.stringify(dataPath)});
const out = [];
for (const n of ${JSON.stringify(COUNTS)}) {
  const o = Buffer.alloc(5 + n * 32 + 7, 0xee);
  hashBlocks(data.subarray(3, 3 + n * 4096), n, o, 5);
  // Bytes around the written range stay untouched.
  if (o.subarray(0, 5).some((b) => b !== 0xee) || o.subarray(5 + n * 32).some((b) => b !== 0xee)) throw new Error('wrote outside its range for n=' + n);
  out.push(o.subarray(5, 5 + n * 32).toString('hex'));
}
let threw = '';
try { hashBlocks(data.subarray(0, 4095), 1, Buffer.alloc(32), 0); } catch (e) { threw = e.message; }
console.log(JSON.stringify({ impl: hashBlocksImplementation(), out, threw }));`,
      mode.env,
    ) as { impl: { library: string | null; lanes: number }; out: string[]; threw: string };
    t.equal(got.impl.library, library, 'the kernel built by setup is found');
    t.equal(got.impl.lanes, mode.lanes, `${mode.lanes || 'no'} SIMD lanes on this CPU`);
    COUNTS.forEach((n, i) => t.equal(got.out[i], expected[i], `${n} blocks`));
    t.match(got.threw, /buffer too small/, 'a source shorter than n blocks is refused');
  });
}

// Files whose sizes cross block, run (64 blocks), staging (1 MiB) and level-1 (128 blocks)
// boundaries, one large enough to be split across workers, and many small ones in one batch.
const SIZES = [0, 1, 4095, 4096, 4097, 64 * 4096 - 1, 64 * 4096, 128 * 4096, 128 * 4096 + 1, 255 * 4096 + 9, 256 * 4096, 256 * 4096 + 1, (3 << 20) + 5, (33 << 20) + 7];
for (let i = 0; i < 150; i++) SIZES.push((i * 7919) % 30000);
const files = SIZES.map((n, i) => {
  const p = join(dir, `f-${i}`);
  writeFileSync(p, randomBytes(n));
  return p;
});
const fsverity = execFileSync('fsverity', ['digest', '--compact', ...files], { encoding: 'utf8', maxBuffer: 1 << 24 }).trim().split('\n');

for (const mode of MODES) {
  t.test(`fs-verity digests, ${mode.name}: every hashing path equals fsverity digest`, async (t) => {
    const got = child(
      `import { fsverityDigestFiles, fsverityDigestFile, FsVerityHasher } from ${dist('src/composefs/fsverity.js')};
import { HashPool } from ${dist('src/composefs/sources/hash-pool.js')};
import { readFileSync } from 'node:fs';
const files = ${JSON.stringify(files)};
const sizes = ${JSON.stringify(SIZES)};
const hex = (ds) => ds.map((d) => d.toString('hex'));
const r = {};
r.batches = hex(await fsverityDigestFiles(files, { sizes, workers: 2 }));
r.oneWorker = hex(await fsverityDigestFiles(files, { sizes, workers: 1 }));
r.split = (await fsverityDigestFile(files[files.length - 151], { workers: 2, parallelThreshold: 0 })).toString('hex');
// The calling thread, fed in chunks that are not block-aligned.
r.hasher = files.map((f) => {
  const data = readFileSync(f);
  const h = new FsVerityHasher();
  for (let o = 0; o < data.length; o += 12289) h.update(data.subarray(o, o + 12289));
  return h.digest().toString('hex');
});
// The layer scanner's worker, fed in chunks of 5000 bytes.
const pool = new HashPool();
try {
  r.pool = hex(await Promise.all(files.map((f) => {
    const data = readFileSync(f);
    const pf = pool.file(data.length);
    for (let o = 0; o < data.length; o += 5000) pf.data(data.subarray(o, o + 5000));
    return pf.end();
  })));
} finally {
  await pool.close();
}
console.log(JSON.stringify(r));`,
      mode.env,
    ) as Record<string, string[] | string>;
    t.same(got.batches, fsverity, 'worker batches (2 workers)');
    t.same(got.oneWorker, fsverity, 'one worker');
    t.equal(got.split, fsverity[files.length - 151], 'a file split across workers');
    t.same(got.hasher, fsverity, 'FsVerityHasher, unaligned chunks');
    t.same(got.pool, fsverity, 'HashPool (OCI layer scanning), 5000-byte chunks');
  });
}

// Messages of every length around the padding boundaries (55/56, 63/64/65, 119/120) and larger
// ones, in batches smaller and larger than the lanes, at odd offsets of one buffer.
const LENGTHS = [0, 1, 3, 55, 56, 57, 63, 64, 65, 100, 119, 120, 127, 128, 129, 4096, 65536 + 7];
for (let i = 0; i < 200; i++) LENGTHS.push(i % 9 === 0 ? 70000 + ((i * 7919) % 300000) : (i * 7919) % 9000);
const msgBase = randomBytes(LENGTHS.reduce((a, n) => a + n + 3, 5));
const msgOffsets: number[] = [];
{
  let at = 5;
  for (const n of LENGTHS) {
    msgOffsets.push(at);
    at += n + 3;
  }
}
const msgPath = join(dir, 'messages.bin');
writeFileSync(msgPath, msgBase);
const msgExpected = LENGTHS.map((n, i) => createHash('sha256').update(msgBase.subarray(msgOffsets[i]!, msgOffsets[i]! + n)).digest('hex'));

for (const mode of MODES) {
  t.test(`sha256Messages, ${mode.name}: equal to SHA-256 of each message`, async (t) => {
    const got = child(
      `import { sha256Messages } from ${dist('ostree-bindings/sha256-blocks.js')};
import { readFileSync } from 'node:fs';
const base = readFileSync(${JSON.stringify(msgPath)});
const offsets = ${JSON.stringify(msgOffsets)};
const lengths = ${JSON.stringify(LENGTHS)};
const hex = (b) => Array.from({ length: b.length / 32 }, (_, i) => b.subarray(i * 32, i * 32 + 32).toString('hex'));
const r = { all: hex(sha256Messages(base, offsets, lengths)), few: [] };
// Batches of 1 to 20 messages (fewer and more than the lanes).
for (let k = 1; k <= 20; k++) r.few.push(hex(sha256Messages(base, offsets.slice(0, k), lengths.slice(0, k))));
let threw = '';
try { sha256Messages(base, [base.length - 1], [2]); } catch (e) { threw = e.message; }
r.threw = threw;
console.log(JSON.stringify(r));`,
      mode.env,
    ) as { all: string[]; few: string[][]; threw: string };
    t.same(got.all, msgExpected, `${LENGTHS.length} messages in one batch`);
    got.few.forEach((f, k) => t.same(f, msgExpected.slice(0, k + 1), `a batch of ${k + 1}`));
    t.match(got.threw, /outside the buffer/, 'a message past the end of the buffer is refused');
  });
}
