/**
 * OCI image → composefs digest. The image is a Debian bookworm minbase rootfs (about 6 700
 * entries, 200 MiB) cut into four gzip layers (/usr/lib, /usr/share, the rest with its root entry,
 * and a last layer with whiteouts and an added file).
 *
 *  - ours, from the layers: `ostree-oci composefs oci:IMG` (verify blobs and diffids, gunzip,
 *    parse, fs-verity of every file, merge, EROFS, digest) against `mkcomposefs
 *    --print-digest-only` (the oracle's C binary, run directly with chroot, /proc bound) on the image
 *    extracted to a directory — which is less work: no decompression, no merge;
 *  - ours, from the same directory: `ostree-oci composefs --dir` against the same mkcomposefs.
 *
 * Before timing, the two digests of ours must be equal (image and extraction agree). The
 * mkcomposefs digest differs by design (it keeps nanoseconds, ignores hardlinks, keeps every
 * xattr: see README "composefs from images and directories").
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createImageWriter } from '../../src/oci/index.js';
import { ensureBookwormRootfs } from '../lib/bookworm-rootfs.js';
import { measure, type BenchModule, type BenchRow } from './lib.js';

// stdin from /dev/null: a bash at shell level 1 whose stdin is a socket (a bench started by a
// remote shell, SHLVL unset) reads /etc/bash.bashrc, whose `$PS1` test fails under -u.
const sh = (script: string): string =>
  execFileSync('bash', ['-euo', 'pipefail', '-c', script], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'inherit'] });

/** Directory mtimes under `dir` (relative path → seconds, fractional). */
function dirTimes(dir: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of sh(`cd '${dir}' && find . -type d -printf '%P\\t%T@\\n'`).split('\n')) {
    if (!l) continue;
    const [p, t] = l.split('\t');
    m.set(p!, Number(t));
  }
  return m;
}

/** Layers applied in order: whiteouts first, GNU tar for the rest, parents' mtimes restored. */
function extract(tars: string[], dest: string): void {
  mkdirSync(dest, { recursive: true });
  for (const tar of tars) {
    const names = sh(`tar --quoting-style=literal -tf '${tar}'`).split('\n').filter((n) => n !== '').map((n) => (n === './' || n === '.' ? '' : n.replace(/^\.\//, '').replace(/\/$/, '')));
    const declared = new Set(names);
    const before = dirTimes(dest);
    for (const n of names) {
      const m = /^(.*\/)?\.wh\.(.*)$/.exec(n);
      if (m && m[2] !== '.wh..opq') rmSync(join(dest, m[1] ?? '', m[2]!), { recursive: true, force: true });
    }
    sh(`tar --xattrs --xattrs-include='*' --numeric-owner -p --exclude='.wh.*' -C '${dest}' -xf '${tar}'`);
    for (const [p, t] of before) if (!declared.has(p) && existsSync(join(dest, p))) utimesSync(join(dest, p), t, t);
  }
}

const bench: BenchModule = {
  title: 'OCI image (4 layers, bookworm minbase) → composefs digest vs mkcomposefs on the extracted tree',
  async run(ctx): Promise<BenchRow[]> {
    const rootfs = ensureBookwormRootfs(ctx.root, (m) => process.stderr.write(`bench: ${m}\n`));
    const oracleRoot = execFileSync(join(ctx.root, 'scripts', 'oracle.sh'), ['path'], { encoding: 'utf8' }).trim();
    execFileSync(join(ctx.root, 'scripts', 'oracle.sh'), ['ensure'], { stdio: 'inherit' });
    const s = ctx.scratch;
    const tarOpts = `--xattrs --xattrs-include='*' --format=pax --numeric-owner --sort=name`;
    sh(`tar ${tarOpts} -C '${rootfs}' --exclude=./usr/lib --exclude=./usr/share -cf '${s}/l0-root.tar' .`);
    sh(`tar ${tarOpts} -C '${rootfs}' -cf '${s}/l1-lib.tar' usr/lib && tar ${tarOpts} -C '${rootfs}' -cf '${s}/l2-share.tar' usr/share`);
    mkdirSync(join(s, 'l3/usr/share'), { recursive: true });
    mkdirSync(join(s, 'l3/etc'), { recursive: true });
    writeFileSync(join(s, 'l3/usr/share/.wh.doc'), '');
    writeFileSync(join(s, 'l3/etc/.wh.motd'), '');
    writeFileSync(join(s, 'l3/etc/bench-added'), 'added by the last layer\n'.repeat(100));
    sh(`tar ${tarOpts} -C '${s}/l3' --no-recursion -cf '${s}/l3-top.tar' usr/share/.wh.doc etc/.wh.motd etc/bench-added`);
    const tars = ['l0-root', 'l1-lib', 'l2-share', 'l3-top'].map((n) => join(s, `${n}.tar`));

    const layout = join(s, 'img');
    const w = await createImageWriter(`oci:${layout}:bench`);
    const layers = [];
    for (const t of tars) layers.push(await w.addLayer(createReadStream(t), { compression: 'gzip' }));
    await w.commit({ config: { architecture: 'amd64', os: 'linux' }, layers });
    const ref = `oci:${layout}:bench`;

    // The extraction lives inside the oracle chroot so that its mkcomposefs can read it directly.
    const inChroot = `/tmp/ostree-oci-bench-composefs-${process.pid}`;
    const extracted = join(oracleRoot, inChroot);
    rmSync(extracted, { recursive: true, force: true });
    try {
      extract(tars, extracted);
      const entries = Number(sh(`find '${extracted}' | wc -l`).trim());
      const fromLayers = execFileSync(process.execPath, [ctx.cli, 'composefs', ref], { encoding: 'utf8' }).trim();
      const fromDir = execFileSync(process.execPath, [ctx.cli, 'composefs', '--dir', extracted], { encoding: 'utf8' }).trim();
      if (fromLayers !== fromDir) throw new Error(`digests differ: layers ${fromLayers}, extracted directory ${fromDir}`);
      // mkcomposefs needs /proc: chroot inside a private mount namespace with /proc bound.
      const mkArgs = ['-m', '--propagation', 'private', 'sh', '-c', `mount --bind /proc '${oracleRoot}/proc' && exec chroot '${oracleRoot}' mkcomposefs --print-digest-only '${inChroot}'`];
      const mk = execFileSync('unshare', mkArgs, { encoding: 'utf8' }).trim();
      process.stderr.write(`bench: ${entries} entries; ours ${fromLayers} (layers = directory); mkcomposefs ${mk}\n`);
      const anchor = await measure('unshare', mkArgs, {}, 2);
      const oursLayers = await measure(process.execPath, [ctx.cli, 'composefs', ref], {}, 2);
      const oursDir = await measure(process.execPath, [ctx.cli, 'composefs', '--dir', extracted], {}, 2);
      return [
        {
          work: `OCI image → composefs digest (4 gzip layers, ${entries} entries, 200 MiB)`,
          ours: oursLayers,
          anchorTool: 'mkcomposefs --print-digest-only (extracted dir)',
          anchor,
          goal: 'time ≤ 3× (also verifies + gunzips); RSS < 200 MiB, flat in layer size',
        },
        {
          work: `directory → composefs digest (${entries} entries)`,
          ours: oursDir,
          anchorTool: 'mkcomposefs --print-digest-only',
          anchor,
          goal: 'time ≤ 2×; RSS < 200 MiB',
        },
      ];
    } finally {
      rmSync(extracted, { recursive: true, force: true });
    }
  },
};

export default bench;
