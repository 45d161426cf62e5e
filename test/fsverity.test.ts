/**
 * fs-verity digests against the real `fsverity digest` (fsverity-utils) on the same files, through
 * every API: sync buffer, streaming (odd chunk sizes), the file API on the calling thread and the
 * worker-thread parallel path; plus the CLI, and the libcomposefs empty-file quirk against
 * `composefs-info measure-file` (oracle chroot).
 */
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  FsVerityHasher,
  fsverityDigest,
  fsverityDigestFile,
  fsverityDigestFiles,
  fsverityDigestStream,
  MerkleTreeBuilder,
} from '../src/composefs/fsverity.js';
import { ensureBuilt } from './helpers/tmp.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
// The CLI tests run the built JS.
ensureBuilt();
const dir = mkdtempSync(join(tmpdir(), 'fsverity-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** Run `fn`, sampling this process's RSS; assert growth above the starting RSS stays < 128 MiB. */
async function peakRss<T>(fn: () => Promise<T>, t: Test, what: string): Promise<T> {
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
    peak = Math.max(peak, process.memoryUsage().rss);
    const grow = (peak - base) / 2 ** 20;
    t.ok(grow < 128, `${what}: RSS grew by ${grow.toFixed(0)} MiB (< 128 MiB)`);
  }
}

/** `fsverity digest --compact FILE` → hex. */
function cDigest(path: string): string {
  return execFileSync('fsverity', ['digest', '--compact', path], { encoding: 'utf8' }).trim();
}

t.test('spec §9.3 vectors (computed independently)', async (t) => {
  const v = (b: Buffer) => fsverityDigest(b).toString('hex');
  t.equal(v(Buffer.alloc(0)), '3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95');
  t.equal(v(Buffer.from('hello')), '555b589c26ee43b7a2510e6c67ced9fb3190b6da6e9e683984551f5d77a763de');
  t.equal(v(Buffer.from('hello world\n')), '37061ef2ac4c21bec68489b56138c5780306a4ad7fe6676236ecdf2c9027cd92');
  t.equal(v(Buffer.alloc(4096)), 'babc284ee4ffe7f449377fbf6692715b43aec7bc39c094a95878904d34bac97e');
  t.equal(v(Buffer.alloc(4097)), '093756e4ea9683329106d4a16982682ed182c14bf076463a9e7f97305cbac743');
  const b = Buffer.alloc(129 * 4096);
  for (let i = 0; i < b.length; i++) b[i] = (13 * i) % 256;
  t.equal(v(b), '4a39914de40346c5caa0fc23eecbb3c339e1aebc87a451898358017eb4bef224');
  const c = Buffer.alloc(1048581);
  for (let i = 0; i < c.length; i++) c[i] = (7 * i + 3) % 251;
  t.equal(v(c), '2c4dfb4505cae5cced75c4e40e2d6acc1fe4b2bb3250bde4940e8fad218ce6eb');
});

const SIZES: [string, number][] = [
  ['0', 0],
  ['1', 1],
  ['4095', 4095],
  ['4096', 4096],
  ['4097', 4097],
  ['128x4096 (exactly one level-1 block)', 128 * 4096],
  ['129x4096', 129 * 4096],
  ['1MiB+1', (1 << 20) + 1],
  ['128MiB+7', (128 << 20) + 7],
];

for (const [label, size] of SIZES) {
  t.test(`size ${label}: equals fsverity digest via all APIs`, async (t) => {
    const path = join(dir, `f-${size}`);
    const data = randomBytes(size);
    writeFileSync(path, data);
    const expected = cDigest(path);
    t.equal(fsverityDigest(data).toString('hex'), expected, 'sync fsverityDigest');

    // streaming with awkward chunk sizes (pending-block handling)
    for (const chunk of [1, 7, 4095, 4097, 65536 + 13]) {
      if (size > (8 << 20) && chunk < 65536) continue; // small-chunk feeding of 128 MiB is just slow
      const h = new FsVerityHasher();
      for (let o = 0; o < size; o += chunk) h.update(data.subarray(o, Math.min(size, o + chunk)));
      t.equal(h.digest().toString('hex'), expected, `FsVerityHasher, chunks of ${chunk}`);
    }
    t.equal((await fsverityDigestStream(createReadStream(path))).toString('hex'), expected, 'fsverityDigestStream');
    t.equal((await fsverityDigestFile(path, { workers: 1 })).toString('hex'), expected, 'file, calling thread');
    t.equal(
      (await fsverityDigestFile(path, { workers: 2, parallelThreshold: 0 })).toString('hex'),
      expected,
      'file, 2 worker threads',
    );
    t.equal((await fsverityDigestFile(path)).toString('hex'), expected, 'file, default options');
    rmSync(path);
  });
}

t.test('many files hashed in worker batches (FileDigestQueue) equal fsverity digest, in order', async (t) => {
  // Sizes around every block and level boundary, many small files (several batches), and one
  // file ≥ 32 MiB that takes the split-across-workers path.
  const sizes = [0, 1, 4095, 4096, 4097, 127 * 4096, 128 * 4096, 128 * 4096 + 1, 129 * 4096, 128 * 128 * 4096 + 5, (1 << 20) + 3, (33 << 20) + 1];
  for (let i = 0; i < 600; i++) sizes.push((i * 7919) % 20000);
  const paths = sizes.map((n, i) => {
    const p = join(dir, `batch-${i}`);
    writeFileSync(p, randomBytes(n));
    return p;
  });
  const expected = execFileSync('fsverity', ['digest', '--compact', ...paths], { encoding: 'utf8', maxBuffer: 1 << 24 }).trim().split('\n');
  let progress = 0;
  const got = await fsverityDigestFiles(paths, { sizes, onProgress: (d) => (progress = d) });
  t.same(got.map((d) => d.toString('hex')), expected, `${paths.length} digests, in order`);
  t.equal(progress, paths.length, 'progress reached every file');
  const noSizes = await fsverityDigestFiles(paths.slice(0, 20), { workers: 2 });
  t.same(noSizes.map((d) => d.toString('hex')), expected.slice(0, 20), 'without sizes');
  const one = await fsverityDigestFiles(paths.slice(0, 20), { workers: 1 });
  t.same(one.map((d) => d.toString('hex')), expected.slice(0, 20), 'one worker');
  const here = await fsverityDigestFiles(paths.slice(0, 20), { workers: 0 });
  t.same(here.map((d) => d.toString('hex')), expected.slice(0, 20), 'on the calling thread');
  // A single-core machine (1 worker) and the calling thread (0) must not open every queued file at
  // once: with 64 descriptors allowed, 612 files used to fail with EMFILE.
  const list = join(dir, 'paths.json');
  writeFileSync(list, JSON.stringify(paths));
  const script = `import { fsverityDigestFiles } from ${JSON.stringify(join(ROOT, 'dist', 'src', 'composefs', 'fsverity.js'))};
const paths = JSON.parse((await import('node:fs')).readFileSync(${JSON.stringify(list)}, 'utf8'));
for (const workers of [1, 0]) {
  const d = await fsverityDigestFiles(paths, { workers });
  console.log(JSON.stringify(d.map((x) => x.toString('hex'))));
}`;
  const few = spawnSync('bash', ['-c', 'ulimit -n 64 && exec node --input-type=module -e "$0"', script], { encoding: 'utf8', maxBuffer: 1 << 26 });
  t.equal(few.status, 0, `64 descriptors: exit 0 (${/^.*Error.*$/m.exec(few.stderr)?.[0] ?? few.stderr.trim()})`);
  const lines = few.stdout.trim().split('\n');
  t.same(lines.length === 2 ? JSON.parse(lines[0]!) : [], expected, '64 descriptors, 1 worker: every digest, in order');
  t.same(lines.length === 2 ? JSON.parse(lines[1]!) : [], expected, '64 descriptors, calling thread: every digest, in order');
  await t.rejects(fsverityDigestFiles([paths[3]!, join(dir, 'no-such-file'), paths[4]!]), /no-such-file/, 'a missing file is an error naming it');
  await t.rejects(fsverityDigestFiles([dir]), /not a regular file/, 'a directory is an error');
  await t.rejects(fsverityDigestFiles([paths[5]!], { sizes: [sizes[5]! + 1] }), /changed size/, 'a file whose size is not the one announced is an error');
  // The same for a file split across workers (≥ 32 MiB) and on the calling thread.
  await t.rejects(fsverityDigestFiles([paths[11]!], { sizes: [sizes[11]! - 4096], workers: 2 }), /changed size \(\d+ → \d+ bytes\)/, 'split across workers: a size other than the announced one is an error');
  await t.rejects(fsverityDigestFiles([paths[5]!], { sizes: [sizes[5]! + 1], workers: 0 }), /changed size/, 'calling thread: a size other than the announced one is an error');
  for (const p of paths) rmSync(p);
});

t.test('3 GiB sparse file: parallel (CLI) and streaming equal fsverity digest, flat memory', async (t) => {
  const path = join(dir, 'sparse3g');
  execFileSync('truncate', ['-s', '3G', path]);
  const fd = openSync(path, 'r+');
  for (const [off, text] of [
    [0, 'start'],
    [4095, 'x'],
    [1234567890, 'middle bytes'],
    [3 * 1024 ** 3 - 3, 'end'],
  ] as const) {
    writeSync(fd, Buffer.from(text), 0, text.length, off);
  }
  closeSync(fd);
  const expected = cDigest(path);
  // the parallel file API through the CLI in a fresh process, peak RSS measured by GNU time and
  // compared with the same CLI on a tiny file (the CLI's own baseline grows with its commands)
  const peakKiB = (file: string): number => {
    const timeOut = join(dir, 'time.txt');
    const r = spawnSync('/usr/bin/time', ['-f', '%M', '-o', timeOut, 'node', CLI, 'fsverity', file], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    t.equal(r.stdout, `sha256:${cDigest(file)} ${file}\n`, `CLI output for ${file}`);
    return Number(readFileSync(timeOut, 'utf8').trim().split(/\s+/).pop());
  };
  const tiny = join(dir, 'tiny');
  writeFileSync(tiny, 'x');
  const growMiB = (peakKiB(path) - peakKiB(tiny)) / 1024;
  t.ok(growMiB < 100, `CLI on 3 GiB (2 worker threads) peaks ${growMiB.toFixed(0)} MiB above the CLI on 1 byte`);
  t.equal(
    (
      await peakRss(() => fsverityDigestStream(createReadStream(path, { highWaterMark: 1 << 20 })), t, 'streaming API')
    ).toString('hex'),
    expected,
    'streaming API',
  );
  rmSync(path);
});

t.test('shared worker pool: concurrent files, and a path replaced between calls', async (t) => {
  const files = [1, 5000, 40 << 20, 3 << 20, 17 << 20].map((n, i) => {
    const p = join(dir, `c${i}`);
    writeFileSync(p, randomBytes(n));
    return p;
  });
  const got = await Promise.all(files.map((f) => fsverityDigestFile(f, { workers: 2, parallelThreshold: 0 })));
  t.same(got.map((d) => d.toString('hex')), files.map(cDigest), 'concurrent parallel digests');
  const p = files[3]!;
  writeFileSync(p, randomBytes(3 << 20)); // new content, same path
  t.equal((await fsverityDigestFile(p, { workers: 2, parallelThreshold: 0 })).toString('hex'), cDigest(p));
  await t.rejects(fsverityDigestFile(join(dir, 'missing'), { workers: 2, parallelThreshold: 0 }), { code: 'ENOENT' });
  for (const f of files) rmSync(f);
});

t.test('MerkleTreeBuilder folds level-0 hashes like the full hasher', async (t) => {
  const data = randomBytes(300 * 4096 + 5);
  const tree = new MerkleTreeBuilder();
  const { createHash } = await import('node:crypto');
  for (let o = 0; o < data.length; o += 4096) {
    const blk = Buffer.alloc(4096);
    data.copy(blk, 0, o, Math.min(data.length, o + 4096));
    tree.pushHashes(createHash('sha256').update(blk).digest());
  }
  t.equal(tree.blockCount, 301);
  const root = tree.root();
  // The root is what the descriptor of fsverityDigest embeds: recompute the digest from it.
  const { fsverityDescriptorDigest } = await import('../src/composefs/fsverity.js');
  t.same(fsverityDescriptorDigest(root, data.length), fsverityDigest(data));
  t.throws(() => tree.pushHashes(Buffer.alloc(31)), /multiple of 32/);
});

t.test('hasher misuse is an error', async (t) => {
  const h = new FsVerityHasher();
  h.update(Buffer.from('abc'));
  h.digest();
  t.throws(() => h.update(Buffer.from('x')), /after digest/);
  t.throws(() => h.digest(), /twice/);
  await t.rejects(fsverityDigestStream((async function* () {
    yield 'text' as unknown as Buffer;
  })()), /string/);
});

const oracleReady = existsSync(join(ROOT, '.cache', 'oracle-sid', '.ready'));
t.test('empty input: kernel semantics by default, libcomposefs quirk on request', { skip: !oracleReady && 'oracle chroot not built' }, async (t) => {
  const odir = mkdtempSync('/tmp/fsverity-oracle-');
  t.teardown(() => rmSync(odir, { recursive: true, force: true }));
  const empty = join(odir, 'empty');
  const small = join(odir, 'small');
  writeFileSync(empty, '');
  writeFileSync(small, randomBytes(5000));
  const r = spawnSync(join(ROOT, 'scripts', 'oracle.sh'), ['run', 'composefs-info', 'measure-file', empty, small], {
    encoding: 'utf8',
  });
  t.equal(r.status, 0, r.stderr);
  const [lcfsEmpty, lcfsSmall] = r.stdout.trim().split('\n');
  t.equal(fsverityDigest(Buffer.alloc(0), { emptyInput: 'libcomposefs' }).toString('hex'), lcfsEmpty);
  t.equal((await fsverityDigestFile(empty, { emptyInput: 'libcomposefs' })).toString('hex'), lcfsEmpty);
  t.equal((await fsverityDigestStream([], { emptyInput: 'libcomposefs' })).toString('hex'), lcfsEmpty);
  t.equal((await fsverityDigestFile(empty)).toString('hex'), cDigest(empty), 'default = kernel = fsverity digest');
  t.not(lcfsEmpty, cDigest(empty), 'the two conventions really differ');
  t.equal((await fsverityDigestFile(small, { emptyInput: 'libcomposefs' })).toString('hex'), lcfsSmall);
  t.equal(lcfsSmall, cDigest(small), 'non-empty input: both conventions agree');
});

t.test('CLI: ostree-oci fsverity prints like fsverity digest', async (t) => {
  const cli = CLI;
  t.ok(existsSync(cli), 'built CLI exists');
  const files = ['a b', 'c', 'empty'].map((n) => join(dir, n));
  writeFileSync(files[0]!, randomBytes(10000));
  writeFileSync(files[1]!, randomBytes(40 << 20)); // above the parallel threshold
  writeFileSync(files[2]!, '');
  const ours = spawnSync('node', [cli, 'fsverity', ...files], { encoding: 'utf8' });
  t.equal(ours.status, 0, ours.stderr);
  const theirs = execFileSync('fsverity', ['digest', ...files], { encoding: 'utf8' });
  t.equal(ours.stdout, theirs);
  const json = spawnSync('node', [cli, 'fsverity', '--json', files[1]!], { encoding: 'utf8' });
  t.equal(json.status, 0, json.stderr);
  t.same(JSON.parse(json.stdout), [{ file: files[1], digest: cDigest(files[1]!), algorithm: 'sha256' }]);
  const missing = spawnSync('node', [cli, 'fsverity', join(dir, 'nope')], { encoding: 'utf8' });
  t.equal(missing.status, 2);
  t.match(missing.stderr, /cannot read .*nope/);
  // Not regular files: refused at once (a FIFO would block the open, /dev/zero never end).
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  for (const special of [fifo, '/dev/zero']) {
    const r = spawnSync('node', [cli, 'fsverity', special], { encoding: 'utf8', timeout: 20_000 });
    t.equal(r.status, 2, `${special}: exit 2 (${r.stderr.trim()})`);
    t.match(r.stderr, /is not a regular file/);
  }
  t.equal(readFileSync(files[2]!).length, 0);
});
