/**
 * Directory → composefs (src/composefs/sources/directory.ts, `ostree-oci composefs --dir`), and
 * the promise of README "composefs from images and directories": an image built from layers and
 * the same image extracted to disk give the same digest.
 *
 * Extraction is done by tools that are not ours: GNU tar per layer (as root, owners, modes,
 * mtimes, xattrs, devices, hardlinks), whiteouts applied before each layer, plus the README's
 * rules for what a tar cannot say (implicit directories, a root without entry); and umoci
 * `raw unpack` followed by the same two fix-ups. Images: 3-4 layers with whiteouts, opaque
 * directories, in-layer and cross-layer hardlinks, binary and text xattrs, devices, a file
 * replacing a directory, implicit parents, sub-second mtimes, with and without root entries.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, lstatSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, extractLayers, makeRichLayers, sh, T_NEWEST, T0 } from './composefs-oci-helpers.js';
import { cli, ensureBuilt, tmp } from './helpers/tmp.js';

ensureBuilt();

function ok(t: { equal: (a: unknown, b: unknown, m?: string) => void }, ...args: string[]): string {
  const r = cli(args);
  t.equal(r.status, 0, `ostree-oci ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

const VARIANTS: string[][] = [[], ['--xattrs', 'all'], ['--boot-variant'], ['--root-metadata', 'from-usr']];

for (const [label, opts] of [
  ['root entry in layer 0', { rootEntry: true }],
  ['no root entry anywhere', { rootEntry: false }],
  ['root entry in a later layer', { rootEntry: false, laterRoot: true }],
] as const) {
  t.test(`layers digest = extracted directory digest (GNU tar): ${label}`, async (t) => {
    const dir = tmp(t);
    const tars = await makeRichLayers(join(dir, 'src'), opts);
    const ref = await buildImage(join(dir, 'img'), tars);
    const rootfs = join(dir, 'rootfs');
    extractLayers(tars, rootfs);
    // The extraction really has what the rules must cope with.
    t.equal(lstatSync(join(rootfs, 'usr/bin/big-link')).ino, lstatSync(join(rootfs, 'usr/bin/big2')).ino, 'hardlink on disk');
    t.not(statSync(join(rootfs, 'usr/lib/empty'), { bigint: true }).mtimeNs % 1_000_000_000n, 0n, 'sub-second mtime on disk');
    t.ok(lstatSync(join(rootfs, 'etc/null')).isCharacterDevice());
    for (const v of VARIANTS) {
      const fromLayers = ok(t, 'composefs', ref, ...v).trim();
      const fromDir = ok(t, 'composefs', '--dir', rootfs, ...v).trim();
      t.equal(fromDir, fromLayers, `${v.join(' ') || 'defaults'}: ${fromLayers}`);
      if (fromDir !== fromLayers) t.comment(ok(t, 'composefs', 'diff', ref, `dir:${rootfs}`, ...v));
    }
    // And the dumps are identical too (same image bytes).
    t.equal(ok(t, 'composefs', '--dir', rootfs, '--dump'), ok(t, 'composefs', ref, '--dump'));
  });
}

t.test('umoci raw unpack + the two README fix-ups gives the same digest', async (t) => {
  const dir = tmp(t);
  const tars = await makeRichLayers(join(dir, 'src'), { rootEntry: true });
  const ref = await buildImage(join(dir, 'img'), tars);
  const rootfs = join(dir, 'rootfs');
  const u = spawnSync('umoci', ['raw', 'unpack', '--image', ref.slice('oci:'.length), rootfs], { encoding: 'utf8' });
  t.equal(u.status, 0, u.stderr);
  const before = cli(['composefs', 'diff', ref, `dir:${rootfs}`, '--json', '--max', '100']);
  const diffs = (JSON.parse(before.stdout) as { differences: { path: string; field: string }[] }).differences;
  // What umoci does not restore: implicit directories get "now", and so do the directories it
  // creates them in (the root, /usr).
  t.same(
    diffs.map((d) => `${d.path} ${d.field}`).sort(),
    ['/ mtime', '/usr mtime', '/usr/share mtime', '/usr/share/doc mtime', '/x mtime', '/x/y mtime'],
    'only mtimes of the root, implicit directories and their parents differ before the fix-ups',
  );
  sh(`touch -h -d @${T_NEWEST} '${rootfs}/x' '${rootfs}/x/y' '${rootfs}/usr/share' '${rootfs}/usr/share/doc' && touch -d @${T0} '${rootfs}/usr' '${rootfs}'`);
  t.equal(ok(t, 'composefs', '--dir', rootfs).trim(), ok(t, 'composefs', ref).trim(), 'equal after the fix-ups');
});

t.test('directory source: hardlinks by inode, xattr policy, errors', async (t) => {
  const dir = tmp(t);
  const tars = await makeRichLayers(join(dir, 'src'), { rootEntry: true });
  const rootfs = join(dir, 'rootfs');
  extractLayers(tars, rootfs);
  const base = ok(t, 'composefs', '--dir', rootfs).trim();
  // Break the hardlink: same bytes and metadata, separate inodes → a different image.
  const p = join(rootfs, 'usr/bin/big2');
  const st = lstatSync(p);
  unlinkSync(p);
  copyFileSync(join(rootfs, 'usr/bin/big-link'), p);
  sh(`chmod 4755 '${p}' && setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= '${p}' && touch -d @${Math.floor(st.mtimeMs / 1000)} '${p}' && touch -d @${T0} '${rootfs}/usr/bin'`);
  const unlinked = ok(t, 'composefs', '--dir', rootfs).trim();
  t.not(unlinked, base, 'separate inodes ≠ hardlinks');
  // A host-added trusted.* xattr changes only the `all` digest.
  const allBefore = ok(t, 'composefs', '--dir', rootfs, '--xattrs', 'all').trim();
  sh(`setfattr -n trusted.host -v added '${rootfs}/etc/fifo' && touch -h -d @${T0} '${rootfs}/etc'`);
  t.equal(ok(t, 'composefs', '--dir', rootfs).trim(), unlinked, 'allowlist ignores trusted.*');
  t.not(ok(t, 'composefs', '--dir', rootfs, '--xattrs', 'all').trim(), allBefore, 'all keeps it');
  sh(`setfattr -n user.host -v added '${rootfs}/etc/gone-with-replacement'`);
  t.not(ok(t, 'composefs', '--dir', rootfs).trim(), unlinked, 'user.* is in the allowlist');

  let e = cli(['composefs', '--dir', join(dir, 'missing')]);
  t.equal(e.status, 1);
  t.match(e.stderr, /missing: cannot read directory \(ENOENT\)/);
  e = cli(['composefs', '--dir', join(rootfs, 'etc/fifo')]);
  t.match(e.stderr, /fifo: not a directory/);
  e = cli(['composefs', '--dir', rootfs, 'oci:x']);
  t.equal(e.status, 2);
  t.match(e.stderr, /either IMGREF or --dir/);
  // No getfattr on PATH: one line naming what is missing, not a crash with a stack trace.
  e = cli(['composefs', '--dir', rootfs], { env: { PATH: join(dir, 'no-such-bin') } });
  t.equal(e.status, 1, 'no getfattr: exit 1');
  t.match(e.stderr, /^error: .*rootfs: reading xattrs needs getfattr \(Debian package "attr"\), which was not found\n$/, 'no getfattr: one error line');
  rmSync(rootfs, { recursive: true, force: true });
});
