/**
 * composefs dumpfile → EROFS image: `ostree-oci composefs mkimage --from-dump D IMG` against
 * `mkcomposefs --from-file` 1.0.8 (the oracle chroot's binary, run with `chroot DIR` directly so
 * neither side pays for a mount namespace; it reads the dump from stdin and writes the image to
 * stdout). The dumpfile is generated deterministically and shaped like a real OS tree in
 * `composefs-info dump` order; the two images must be byte-identical.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { measure, type BenchContext, type BenchModule, type BenchRow, type Measurement } from './lib.js';

/** Deterministic generator (LCG) for a dump of about `entries` entries. */
export function writeDump(path: string, entries: number): number {
  let seed = 0x2545f491;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const hex = (n: number): string => {
    let s = '';
    for (let i = 0; i < n; i++) s += '0123456789abcdef'[rnd(16)];
    return s;
  };
  const labels = ['system_u:object_r:usr_t:s0', 'system_u:object_r:lib_t:s0', 'system_u:object_r:bin_t:s0', 'system_u:object_r:etc_t:s0'];
  const fd = openSync(path, 'w');
  let buf: string[] = [];
  let count = 0;
  const emit = (line: string): void => {
    buf.push(line);
    count++;
    if (buf.length >= 4096) {
      writeSync(fd, buf.join(''));
      buf = [];
    }
  };
  const files: string[] = [];
  emit(`/ 4096 40555 2 0 0 0 1700000000.0 - - - security.selinux=system_u:object_r:root_t:s0\\x00\n`);
  // breadth of the tree: top-level dirs, each with subdirectories, ~14 entries per directory
  const dir = (path: string, depth: number): void => {
    const label = labels[rnd(labels.length)]!;
    const kids: string[] = [];
    const n = depth === 0 ? 12 : 6 + rnd(16);
    for (let i = 0; i < n; i++) kids.push(`${['lib', 'share', 'bin', 'doc', 'x', 'python3.12', 'locale'][rnd(7)]}-${i.toString(36)}${rnd(4) === 0 ? '.so.1' : ''}`);
    kids.sort();
    for (const name of kids) {
      if (count >= entries) return;
      const p = `${path}/${name}`;
      const r = rnd(100);
      const mtime = rnd(10) === 0 ? `17000${rnd(100000)}.${rnd(1000000000)}` : '1700000000.0';
      const sel = ` security.selinux=${label}\\x00`;
      if ((r < 9 && depth < 6) || depth === 0) {
        emit(`${p} 4096 40755 2 0 0 0 ${mtime} - - -${sel}\n`);
        dir(p, depth + 1);
      } else if (r < 72) {
        const size = 65 + rnd(rnd(10) === 0 ? 50_000_000 : 200_000);
        const d = hex(64);
        const caps = rnd(200) === 0 ? ' security.capability=\\x01\\x00\\x00\\x02\\x00\\x20\\x00\\x00' : '';
        emit(`${p} ${size} 100${rnd(5) === 0 ? '755' : '644'} 1 0 0 0 ${mtime} ${d.slice(0, 2)}/${d.slice(2)} - ${d}${sel}${caps}\n`);
        files.push(p);
      } else if (r < 80) {
        const c = hex(1 + rnd(64));
        emit(`${p} ${c.length} 100644 1 0 0 0 ${mtime} - ${c} -${sel}\n`);
      } else if (r < 95) {
        const target = `../lib/${hex(4 + rnd(30))}`;
        emit(`${p} ${target.length} 120777 1 0 0 0 ${mtime} ${target} - -${sel}\n`);
      } else if (r < 98 && files.length) {
        emit(`${p} 0 @100644 0 0 0 0 0.0 ${files[rnd(files.length)]} - -\n`);
      } else {
        emit(`${p} 0 ${rnd(2) ? '20666' : '10644'} 1 0 0 ${rnd(2) ? 259 : 0} ${mtime} - - -${sel}\n`);
      }
    }
  };
  for (let top = 0; count < entries; top++) {
    emit(`/usr${top} 4096 40755 2 0 0 0 1700000000.0 - - - security.selinux=system_u:object_r:usr_t:s0\\x00\n`);
    dir(`/usr${top}`, 0);
  }
  writeSync(fd, buf.join(''));
  closeSync(fd);
  return count;
}

const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

const bench: BenchModule = {
  title: 'composefs dumpfile → EROFS image (vs mkcomposefs --from-file)',
  async run(ctx: BenchContext): Promise<BenchRow[]> {
    const chroot = execFileSync('bash', [join(ctx.root, 'scripts', 'oracle.sh'), 'path'], { encoding: 'utf8' }).trim();
    execFileSync('bash', [join(ctx.root, 'scripts', 'oracle.sh')], { stdio: 'inherit' }); // ensure it exists
    const rows: BenchRow[] = [];
    for (const target of [50_000, 200_000]) {
      const dump = join(ctx.scratch, `tree-${target}.dump`);
      const n = writeDump(dump, target);
      const ours = join(ctx.scratch, `ours-${target}.img`);
      const theirs = join(ctx.scratch, `mkcomposefs-${target}.img`);
      const cmd = `exec chroot '${chroot}' mkcomposefs --from-file - - <'${dump}' >'${theirs}'`;
      // interleaved, best of 3 each, so both tools see the same machine load
      let oursM: Measurement | undefined;
      let anchorM: Measurement | undefined;
      const best = (a: Measurement | undefined, b: Measurement): Measurement =>
        !a ? b : { seconds: Math.min(a.seconds, b.seconds), peakRssMiB: Math.max(a.peakRssMiB, b.peakRssMiB) };
      for (let i = 0; i < 3; i++) {
        oursM = best(oursM, await measure('node', [ctx.cli, 'composefs', 'mkimage', '--from-dump', dump, ours]));
        anchorM = best(anchorM, await measure(cmd, [], { shell: true }));
      }
      if (sha(ours) !== sha(theirs)) throw new Error(`images differ for the ${n}-entry dump: ${ours} vs ${theirs}`);
      rows.push({
        work: `dumpfile → EROFS, ${n} entries (identical image)`,
        ours: oursM!,
        anchorTool: 'mkcomposefs --from-file',
        anchor: anchorM!,
        goal: 'time ≤ 1.0×, RSS ≤ 2×',
      });
    }
    return rows;
  },
};

export default bench;
