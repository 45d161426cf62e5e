/**
 * Dumpfile and EROFS reader fuzzing (issue 9, part 4).
 *
 *  - Dumpfiles: valid seeds (hand-written corner cases and the dump of a sample tree) mutated at
 *    byte, field and line level. Each case is parsed and built here (in the fuzz worker, with a
 *    timeout) and by mkcomposefs 1.0.8 in the oracle chroot — all cases of a batch in one chroot
 *    invocation. Verdicts must agree; when both accept and every line has a well-formed DIGEST field
 *    (a malformed or missing one leaves bytes undefined in C), the images must be byte-identical. Our side may
 *    only fail with an OstreeOciError.
 *  - EROFS images: mkcomposefs' images of the seeds, mutated (bit flips, superblock/inode fields
 *    set to extreme values, truncation, extension). The reader must return a tree or throw an
 *    OstreeOciError — never another exception, never hang — and a tree it returns must have only
 *    names a checkout could use (non-empty, no '/', NUL, '.' or '..').
 */
import { execFileSync } from 'node:child_process';
import { ForkedWorker } from './forked-worker.js';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeDumpfile } from '../../../src/composefs/dumpfile/writer.js';
import { treeFromDirectory } from '../../../src/composefs/sources/directory.js';
import { writeSampleTree } from '../sample-tree.js';
import { Rng } from './rng.js';
import type { CfsReply, CfsRequest } from './composefs-worker.js';

export interface ComposefsFuzzOptions {
  seed: number;
  dumpfiles: number;
  erofs: number;
  dir: string;
  keep?: boolean;
  timeoutMs?: number;
  log?: (s: string) => void;
}

export interface ComposefsFuzzReport {
  dumpfiles: number;
  accepted: number;
  rejected: number;
  /** Cases where mkcomposefs hung (hardlink loops) and we rejected. */
  oracleHangs: number;
  imagesCompared: number;
  erofs: number;
  erofsRead: number;
  erofsRejected: number;
  failures: string[];
}

const ROOT = fileURLToPath(new URL('../../../..', import.meta.url));
const ORACLE = join(ROOT, 'scripts', 'oracle.sh');
const WORKER = fileURLToPath(new URL('./composefs-worker.js', import.meta.url));

const D64 = (c: string): string => c.repeat(64);

/** Hand-written valid dumpfiles covering every file type, xattrs, hardlinks and escapes. */
const SEEDS: string[] = [
  [
    '/ 0 40755 3 0 0 0 0.0 - - -',
    '/a 0 40755 2 0 0 0 1.5 - - - user.x=1',
    '/a/file 11 100644 2 1000 1000 0 1700000000.0 - hello\\x20world -',
    '/a/hard 0 @120000 - - - - 0.0 /a/file - -',
    '/a/link 9 120777 1 0 0 0 0.0 ../target - -',
    `/big 123456789 100644 1 0 0 0 0.0 ab/cdef - ${D64('a')} trusted.overlay.redirect=/x security.selinux=system_u:object_r:etc_t:s0`,
    '/dev 0 40755 2 0 0 0 0.0 - - -',
    '/dev/null 0 20666 1 0 0 259 0.0 - - -',
    '/dev/sda 0 60660 1 0 6 2049 0.0 - - -',
    '/fifo 0 10644 1 0 0 0 0.0 - - -',
    '/sock 0 140755 1 0 0 0 0.0 - - -',
    '/wh 0 20000 1 0 0 0 0.0 - - -',
    '/x\\x0ay 3 100600 1 65534 65534 0 12.999999999 - abc - user.\\x3d=\\x00\\xff',
    '',
  ].join('\n'),
  ['/ 4096 40755 2 0 0 0 0.0 - - -', '/f 5 100644 1 0 0 0 0.0 - hello - user.a=b user.b=c', '/g 0 100644 1 0 0 0 0.0 - - -', ''].join('\n'),
  [
    '/ 0 40555 4 0 0 0 0.0 - - -',
    '/etc 0 40755 2 0 0 0 0.0 - - -',
    `/etc/conf 100 100644 1 0 0 0 0.0 12/3456 - ${D64('0')}`,
    '/usr 0 40755 3 0 0 0 0.0 - - -',
    '/usr/lib 0 40755 2 0 0 0 0.0 - - -',
    `/usr/lib/x 70000 100755 1 0 0 0 0.0 - - ${D64('f')}`,
    '/usr/lib/y 2 100644 1 0 0 0 0.0 - \\x00\\x01 -',
    '',
  ].join('\n'),
];

function sampleDump(dir: string): Promise<Buffer> {
  const tree = join(dir, 'sample-tree');
  if (!existsSync(tree)) writeSampleTree(tree, { containerLayout: true, bigFileMiB: 1 });
  return treeFromDirectory(tree).then((t) => writeDumpfile(t));
}

const HUGE = ['99999999999999999999999', '-1', '0x10', '1e5', '', '18446744073709551615', '18446744073709551616', '4294967296', '00000000000000000000000017', '+5', ' 7'];
const ODD = ['\\', '\\x', '\\xZZ', '\\x0', '%', '\x00', '\xff', '/', '//', '/../x', '.', '..', '-', '=', 'a=b', '@', '\t', '\r'];

function mutateDump(rng: Rng, seed: Buffer): { dump: Buffer; label: string } {
  const lines = seed.toString('latin1').split('\n');
  const n = rng.chance(0.7) ? 1 : 2;
  const labels: string[] = [];
  for (let k = 0; k < n; k++) {
    const li = rng.int(Math.max(1, lines.length - 1));
    const fields = (lines[li] ?? '').split(' ');
    switch (rng.int(14)) {
      case 10:
        // Valid changes: ids, mtime, permission bits.
        if (fields.length > 7 && !fields[2]!.startsWith('@')) {
          fields[rng.pick([4, 5])] = String(rng.pick([0, 1, 65535, 65536, 4294967295]));
          fields[7] = `${rng.int(2 ** 34)}.${rng.int(1e9)}`;
          labels.push(`line ${li} ids/mtime`);
        }
        break;
      case 11:
        fields.push(`${rng.pick(['user', 'trusted', 'security', 'trusted.overlay'])}.k${rng.int(50)}=${'v'.repeat(rng.pick([0, 1, 100, 3000]))}`);
        labels.push(`line ${li} xattr added`);
        break;
      case 12:
      case 13: {
        const dirs = lines.filter((l) => / 4\d{4} /.test(l)).map((l) => l.split(' ')[0]!);
        const parent = dirs.length ? rng.pick(dirs) : '/';
        const name = `${parent === '/' ? '' : parent}/n${rng.hex(4)}`;
        lines.push(rng.pick([`${name} 3 100644 1 0 0 0 0.0 - abc -`, `${name} 0 40755 2 0 0 0 0.0 - - -`, `${name} 4 120777 1 0 0 0 0.0 - abcd -`.replace(' - abcd', ' abcd -')]));
        labels.push(`entry ${name} added`);
        continue;
      }
      case 0: {
        const fi = rng.int(fields.length);
        fields[fi] = rng.pick(HUGE);
        labels.push(`line ${li} field ${fi} number`);
        break;
      }
      case 1: {
        const fi = rng.int(fields.length);
        fields[fi] = (fields[fi] ?? '') + rng.pick(ODD);
        labels.push(`line ${li} field ${fi} odd suffix`);
        break;
      }
      case 2: {
        const fi = rng.int(fields.length);
        fields[fi] = rng.pick(ODD) + 'x'.repeat(rng.pick([0, 1, 255, 256, 4096, 5001, 70000]));
        labels.push(`line ${li} field ${fi} long/odd`);
        break;
      }
      case 3:
        if (fields.length > 1) fields.splice(rng.int(fields.length), 1);
        labels.push(`line ${li} field dropped`);
        break;
      case 4:
        fields.splice(rng.int(fields.length + 1), 0, rng.pick([...ODD, 'user.a=b', 'trusted.overlay.x=y', '-']));
        labels.push(`line ${li} field inserted`);
        break;
      case 5:
        lines.splice(rng.int(lines.length), 0, lines[li]!);
        labels.push(`line ${li} duplicated`);
        continue;
      case 6:
        lines.splice(li, 1);
        labels.push(`line ${li} dropped`);
        continue;
      case 7: {
        const lj = rng.int(lines.length);
        [lines[li], lines[lj]] = [lines[lj]!, lines[li]!];
        labels.push(`lines ${li}/${lj} swapped`);
        continue;
      }
      case 8: {
        // Hardlinks that loop or point nowhere.
        const target = rng.pick(['/', '/a', '/nowhere', fields[0] ?? '/', '/a/hard']);
        lines.push(`/loop${k} 0 @100644 - - - - 0.0 ${target} - -`);
        labels.push(`hardlink to ${target}`);
        continue;
      }
      default: {
        lines.push(`${'/d'.repeat(rng.pick([10, 200, 2100]))} 0 40755 2 0 0 0 0.0 - - -`);
        labels.push('deep path');
        continue;
      }
    }
    lines[li] = fields.join(' ');
  }
  let dump = Buffer.from(lines.join('\n'), 'latin1');
  if (rng.chance(0.12)) {
    const b = Buffer.from(dump);
    const flips = rng.range(1, 4);
    for (let k = 0; k < flips; k++) b[rng.int(b.length)] = rng.int(256);
    dump = b;
    labels.push(`${flips} random byte(s)`);
  }
  if (rng.chance(0.05)) {
    dump = dump.subarray(0, rng.int(dump.length + 1));
    labels.push('truncated');
  }
  return { dump, label: labels.join('; ') };
}

const VERSIONS: string[][] = [[], ['--min-version=0', '--max-version=0'], ['--max-version=1'], ['--min-version=1', '--max-version=1']];

function digestsWellFormed(dump: Buffer): boolean {
  for (const line of dump.toString('latin1').split('\n')) {
    if (line === '') continue;
    const f = line.split(' ');
    // A missing DIGEST field also leaves C reading uninitialized (and out-of-bounds) memory.
    if (f.length < 11 || (f[10] !== '-' && !/^[0-9a-fA-F]{64}$/.test(f[10]!))) return false;
  }
  return true;
}

function mutateErofs(rng: Rng, img: Buffer): { data: Buffer; label: string } {
  const b = Buffer.from(img);
  const what: string[] = [];
  const n = rng.range(1, 4);
  for (let k = 0; k < n; k++) {
    switch (rng.int(6)) {
      case 0: {
        const i = rng.int(b.length);
        b[i] = b[i]! ^ (1 << rng.int(8));
        what.push(`bit flip at ${i}`);
        break;
      }
      case 1: {
        // Superblock (at 1024) and the area right after it: inode table, root inode.
        const i = 1024 + rng.int(Math.min(b.length - 1024, 1024));
        const v = rng.pick([0, 0xff, 0x7f, 0x80]);
        b.fill(v, i, Math.min(b.length, i + rng.pick([1, 2, 4, 8])));
        what.push(`superblock/inode bytes at ${i} = ${v}`);
        break;
      }
      case 2: {
        const i = rng.int(Math.max(1, b.length - 4)) & ~3;
        b.writeUInt32LE(rng.pick([0, 0xffffffff, 0x7fffffff, 0x80000000, 1, b.length, b.length + 4096]), i);
        what.push(`u32 at ${i}`);
        break;
      }
      case 3: {
        const i = rng.int(b.length);
        b.fill(0, i, Math.min(b.length, i + rng.range(1, 512)));
        what.push(`zeroed at ${i}`);
        break;
      }
      case 4:
        for (let j = 0; j < 16; j++) b[rng.int(b.length)] = rng.int(256);
        what.push('16 random bytes');
        break;
      default: {
        const i = 1024 + rng.int(128);
        b.writeUInt16LE(rng.int(65536), i & ~1);
        what.push(`u16 at ${i & ~1}`);
      }
    }
  }
  let data = b;
  if (rng.chance(0.15)) {
    data = b.subarray(0, rng.int(b.length));
    what.push(`truncated to ${data.length}`);
  } else if (rng.chance(0.05)) {
    data = Buffer.concat([b, rng.bytes(rng.range(1, 8192))]);
    what.push('extended');
  }
  return { data, label: what.join('; ') };
}

export async function runComposefsFuzz(o: ComposefsFuzzOptions): Promise<ComposefsFuzzReport> {
  const log = o.log ?? (() => {});
  const timeoutMs = o.timeoutMs ?? 30_000;
  const rep: ComposefsFuzzReport = { dumpfiles: 0, accepted: 0, rejected: 0, oracleHangs: 0, imagesCompared: 0, erofs: 0, erofsRead: 0, erofsRejected: 0, failures: [] };
  rmSync(o.dir, { recursive: true, force: true });
  mkdirSync(o.dir, { recursive: true });
  const worker = new ForkedWorker<Omit<CfsRequest, 'id'>, CfsReply>(WORKER, 'composefs fuzz worker');
  const fail = (s: string): void => {
    rep.failures.push(s);
    log(`FAIL ${s}`);
  };
  try {
    const rng = new Rng(o.seed ^ 0x5eed);
    const seeds = [...SEEDS.map((s) => Buffer.from(s, 'latin1')), await sampleDump(o.dir)];
    // Dumpfile cases (seeds first, unmutated: they must be accepted by both).
    const cases = seeds.map((dump, i) => ({ name: `s${i}`, dump, label: `seed ${i}`, strict: false, args: [] as string[] }));
    for (let i = 0; i < o.dumpfiles; i++) {
      const m = mutateDump(rng, rng.pick(seeds));
      cases.push({ name: `c${i}`, dump: m.dump, label: m.label, strict: rng.chance(0.3), args: rng.pick(VERSIONS) });
    }
    for (const c of cases) writeFileSync(join(o.dir, `${c.name}.dump`), c.dump);
    const script = cases
      .map((c) => `${c.strict ? 'CFS_PARSE_STRICT=1 ' : ''}timeout 10 mkcomposefs ${c.args.join(' ')} --from-file ${c.name}.dump ${c.name}.img 2>${c.name}.err; echo $? >${c.name}.rc`)
      .join('\n');
    writeFileSync(join(o.dir, 'run.sh'), `set -u\ncd ${o.dir}\n${script}\n`);
    log(`composefs fuzz: ${cases.length} dumpfiles through mkcomposefs (one oracle run)`);
    execFileSync(ORACLE, ['run', 'sh', join(o.dir, 'run.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
    const images: Buffer[] = [];
    for (const c of cases) {
      rep.dumpfiles++;
      const rc = Number(readFileSync(join(o.dir, `${c.name}.rc`), 'utf8').trim());
      const where = `dumpfile ${c.name} (seed ${o.seed}: ${c.label}${c.strict ? ', strict' : ''}${c.args.length ? `, ${c.args.join(' ')}` : ''})`;
      const r = await worker.run({ op: 'dumpfile', data: c.dump, strict: c.strict, args: c.args }, timeoutMs);
      if ('hung' in r) {
        fail(`${where}: our parser hangs`);
        continue;
      }
      if ('dead' in r) {
        fail(`${where}: our parser crashed the process (${r.dead})`);
        continue;
      }
      if (!r.ok && !r.error!.typed) {
        fail(`${where}: untyped error ${r.error!.name}: ${r.error!.message}\n${r.error!.stack ?? ''}`);
        continue;
      }
      if (rc === 124) {
        rep.oracleHangs++;
        if (r.ok) fail(`${where}: mkcomposefs hangs (hardlink loop), we accept`);
        continue;
      }
      if (rc === 0 && !r.ok) fail(`${where}: mkcomposefs accepts, we reject: ${r.error!.message}`);
      else if (rc !== 0 && r.ok) fail(`${where}: mkcomposefs rejects (${readFileSync(join(o.dir, `${c.name}.err`), 'utf8').trim()}), we accept`);
      else if (rc === 0) {
        rep.accepted++;
        const cimg = readFileSync(join(o.dir, `${c.name}.img`));
        images.push(cimg);
        if (digestsWellFormed(c.dump)) {
          rep.imagesCompared++;
          if (!Buffer.from(r.image!).equals(cimg)) fail(`${where}: both accept, images differ (${cimg.length} vs ${r.image!.length} bytes)`);
        }
      } else rep.rejected++;
    }
    if (rep.accepted < seeds.length) fail(`only ${rep.accepted} dumpfiles accepted: the seeds must be`);

    // EROFS reader.
    for (let i = 0; i < o.erofs && images.length; i++) {
      const base = rng.pick(images);
      const m = mutateErofs(rng, base);
      rep.erofs++;
      const where = `EROFS case ${i} (seed ${o.seed}: ${m.label})`;
      const r = await worker.run({ op: 'erofs', data: m.data }, timeoutMs);
      if ('hung' in r) fail(`${where}: reader hangs`);
      else if ('dead' in r) fail(`${where}: reader crashed the process (${r.dead})`);
      else if (!r.ok) {
        if (!r.error!.typed) fail(`${where}: untyped error ${r.error!.name}: ${r.error!.message}\n${r.error!.stack ?? ''}`);
        else rep.erofsRejected++;
      } else {
        rep.erofsRead++;
        if (r.badName) fail(`${where}: reader returned an entry name a checkout cannot use: ${r.badName}`);
      }
    }
  } finally {
    worker.stop();
    if (!o.keep && rep.failures.length === 0) rmSync(o.dir, { recursive: true, force: true });
  }
  return rep;
}
