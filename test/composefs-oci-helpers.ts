/**
 * Helpers for the composefs-from-images tests: build real OCI images from layer tars made by GNU
 * tar, and extract images back into a directory with GNU tar (an extraction independent of our
 * layer code: content, owners, modes, mtimes, xattrs, hardlinks and devices are GNU tar's work).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, createReadStream, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tar from 'tar-stream';
import { createImageWriter } from '../src/oci/index.js';
import { ROOT } from './helpers/tmp.js';

export function sh(script: string, cwd?: string): string {
  return execFileSync('bash', ['-euo', 'pipefail', '-c', script], { cwd, encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** PAX tar of `paths` (relative to `dir`), xattrs included; `recursive: false` lists exactly `paths`. */
export function tarLayer(dir: string, out: string, paths: string[] = ['.'], opts: { recursive?: boolean } = {}): string {
  const args = ['--xattrs', "--xattrs-include='*'", '--format=pax', '--numeric-owner', '--sort=name'];
  if (opts.recursive === false) args.push('--no-recursion');
  sh(`tar ${args.join(' ')} -C '${dir}' -cf '${out}' ${paths.map((p) => `'${p}'`).join(' ')}`);
  return out;
}

/** An OCI layout image at `layoutDir` (tag `latest`) whose layers are the given tar files. */
export async function buildImage(
  layoutDir: string,
  tars: string[],
  opts: { compression?: 'gzip' | 'zstd' | 'none'; tag?: string; annotations?: Record<string, string> } = {},
): Promise<string> {
  const ref = `oci:${layoutDir}:${opts.tag ?? 'latest'}`;
  const w = await createImageWriter(ref);
  const layers = [];
  for (const t of tars) layers.push(await w.addLayer(createReadStream(t), { compression: opts.compression ?? 'gzip' }));
  await w.commit({ config: { architecture: 'amd64', os: 'linux' }, layers, ...(opts.annotations ? { annotations: opts.annotations } : {}) });
  return ref;
}

interface Listed {
  path: string;
  isDir: boolean;
}

/** Entries of a tar as GNU tar lists them (normalized: no leading ./, no trailing /). */
function listTar(tar: string): Listed[] {
  const out = sh(`tar --numeric-owner --quoting-style=literal -tvf '${tar}'`);
  const names = sh(`tar --quoting-style=literal -tf '${tar}'`).split('\n').filter((l) => l !== '');
  const types = out.split('\n').filter((l) => l !== '').map((l) => l[0]);
  return names.map((n, i) => {
    let p = n.replace(/^(\.\/)+/, '').replace(/^\/+/, '').replace(/\/+$/, '');
    if (p === '.') p = '';
    return { path: p, isDir: types[i] === 'd' };
  });
}

/**
 * Extract layer tars into `dest` the way a container runtime flattens them, with GNU tar doing
 * the file work, then apply the README's rules for what a tar cannot say:
 *  - whiteouts of a layer are applied before its entries (`.wh.X`: rm -rf X, `.wh..wh..opq`:
 *    empty the directory), and never extracted;
 *  - directories modified by a later layer keep their own mtime (restored after each layer);
 *  - implicit parent directories (no entry in the layer that created them) and, when no layer
 *    has a root entry, the root: 0755 (root: 0555), 0:0, mtime = newest mtime of the final tree.
 */
export function extractLayers(tars: string[], dest: string): void {
  mkdirSync(dest, { recursive: true });
  let rootDeclared = false;
  const implicit = new Set<string>();
  for (const tar of tars) {
    const entries = listTar(tar);
    const declared = new Set(entries.filter((e) => !/(^|\/)\.wh\./.test(e.path)).map((e) => e.path));
    if (declared.has('')) rootDeclared = true;
    // Snapshot directory mtimes (to undo the changes extraction makes to existing parents).
    const dirTimes = sh(`cd '${dest}' && find . -type d -printf '%P\\t%T@\\n'`)
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('\t') as [string, string]);
    // Whiteouts first.
    for (const e of entries) {
      const m = /^(.*?)(?:^|\/)\.wh\.(.*)$/.exec(e.path);
      if (!m) continue;
      const dir = m[1]!;
      const name = m[2]!;
      const d = join(dest, dir);
      if (name === '.wh..opq') {
        if (existsSync(d) && lstatSync(d).isDirectory()) for (const c of readdirSync(d)) rmSync(join(d, c), { recursive: true, force: true });
      } else if (!name.startsWith('.wh.')) {
        rmSync(join(d, name), { recursive: true, force: true });
        for (const p of [...implicit]) if (p === join(dir, name) || p.startsWith(`${join(dir, name)}/`)) implicit.delete(p);
      }
    }
    // Parents that do not exist yet and that this layer does not declare are implicit.
    for (const e of entries) {
      const parts = e.path.split('/').filter((p) => p !== '');
      for (let i = 1; i < parts.length; i++) {
        const p = parts.slice(0, i).join('/');
        if (!declared.has(p) && !existsSync(join(dest, p))) {
          implicit.add(p);
          mkdirSync(join(dest, p));
        }
      }
    }
    for (const p of declared) implicit.delete(p);
    // A file replaces a directory and a directory replaces a file (GNU tar would refuse).
    for (const e of entries) {
      if (e.path === '' || /(^|\/)\.wh\./.test(e.path)) continue;
      const st = lstatSync(join(dest, e.path), { throwIfNoEntry: false });
      if (st && st.isDirectory() !== e.isDir) rmSync(join(dest, e.path), { recursive: true, force: true });
    }
    sh(`tar --xattrs --xattrs-include='*' --numeric-owner --same-owner -p --exclude='.wh.*' -C '${dest}' -xf '${tar}'`);
    // Restore the mtimes of directories this layer did not declare.
    for (const [p, t] of dirTimes) {
      if (declared.has(p) || !existsSync(join(dest, p))) continue;
      sh(`touch -h -d @${t} '${join(dest, p)}'`);
    }
  }
  // The newest mtime of everything that has its own metadata, then implicit dirs and the root.
  const times = sh(`cd '${dest}' && find . -mindepth 1 -printf '%P\\t%T@\\n'`)
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t') as [string, string])
    .filter(([p]) => !implicit.has(p))
    .map(([, t]) => Math.floor(Number(t)));
  const newest = times.length ? Math.max(...times) : 0;
  for (const p of implicit) sh(`chown -h 0:0 '${join(dest, p)}' && chmod 0755 '${join(dest, p)}' && touch -h -d @${newest} '${join(dest, p)}'`);
  if (!rootDeclared) sh(`chown 0:0 '${dest}' && chmod 0555 '${dest}' && touch -d @${newest} '${dest}'`);
  void rootDeclared;
}

/** Run a command in the oracle chroot (mkcomposefs / composefs-info 1.0.8). */
export function oracle(args: string[], opts: { input?: Buffer } = {}): string {
  return execFileSync(join(ROOT, 'scripts', 'oracle.sh'), ['run', ...args], {
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    ...(opts.input ? { input: opts.input } : {}),
    stdio: [opts.input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
}

export interface TarEntrySpec {
  name: string;
  type?: 'file' | 'directory' | 'link' | 'symlink';
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  /** Text xattrs, written as PAX SCHILY.xattr.* records. */
  xattrs?: Record<string, string>;
}

/** A tar written with tar-stream (for entries GNU tar cannot produce from a directory). */
export async function craftTar(out: string, entries: TarEntrySpec[]): Promise<string> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header: Parameters<ReturnType<typeof tar.pack>['entry']>[0] = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: new Date((e.mtime ?? 1700000000) * 1000),
    };
    if (e.linkname !== undefined) header.linkname = e.linkname;
    if (e.xattrs) header.pax = Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [`SCHILY.xattr.${k}`, v]));
    if (type === 'file') pack.entry(header, Buffer.isBuffer(e.content) ? e.content : Buffer.from(e.content ?? ''));
    else pack.entry(header);
  }
  pack.finalize();
  await done;
  writeFileSync(out, Buffer.concat(chunks));
  return out;
}

export const T0 = 1700000000;
export const T_NEWEST = 1700000500;

const setx = (path: string, name: string, value: string): void => void execFileSync('setfattr', ['-h', '-n', name, '-v', value, path]);

/**
 * The layers of the "rich" test image (README rules exercised):
 *  0 (GNU tar of a directory, with its `./` root entry unless `rootEntry` is false): files of
 *    0/6/64/65/10000 bytes, binary security.capability, user.* and trusted.* xattrs, an in-layer
 *    hardlink, symlink, char/block devices, a char 0/0, fifo, setuid, odd owners, a non-UTF-8
 *    name, sub-second mtimes, /boot and /sysroot content;
 *  1 (tar-stream): a file written before its directory's opaque marker, whiteouts of a symlink,
 *    a directory and a file, a cross-layer hardlink, implicit parents, a file replacing a
 *    directory, whiteout + re-creation of the same name;
 *  2 (tar-stream): whiteout of a hardlink group's first name, deep implicit parents with an old
 *    mtime, a file replaced with new xattrs;
 *  3 (only with `laterRoot`): a root entry `./` (0750, uid 0) that overrides layer 0's.
 */
export async function makeRichLayers(dir: string, opts: { rootEntry?: boolean; laterRoot?: boolean } = {}): Promise<string[]> {
  const l0 = join(dir, 'l0');
  mkdirSync(l0, { recursive: true });
  for (const d of ['usr/bin', 'usr/lib', 'etc/conf.d', 'data/sub', 'opt/dir', 'boot', 'sysroot/ostree', 'home/user']) mkdirSync(join(l0, d), { recursive: true });
  const w = (rel: string, data: string | Buffer, mode = 0o644): string => {
    writeFileSync(join(l0, rel), data);
    chmodSync(join(l0, rel), mode);
    return join(l0, rel);
  };
  const small = w('usr/bin/small', 'hello\n');
  setx(small, 'user.foo', 'bar');
  setx(small, 'trusted.t', '1');
  const big = w('usr/bin/big', Buffer.alloc(10000, 7), 0o4755);
  execFileSync('setfattr', ['-n', 'security.capability', '-v', '0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=', big]);
  linkSync(big, join(l0, 'usr/bin/big-link'));
  w('usr/lib/empty', '');
  setx(w('usr/lib/exactly64', Buffer.alloc(64, 0x41)), 'trusted.kept-by-all', 'x');
  w('usr/lib/bytes65', Buffer.alloc(65, 0x42));
  // 1.5 MiB of pseudo-random bytes: hashed on the worker thread (≥ 256 KiB).
  w('usr/lib/random', Buffer.concat(Array.from({ length: 48 * 1024 }, (_x, i) => createHash('sha256').update(String(i)).digest())));
  w('etc/conf.d/a.conf', 'a=1\n');
  w('data/keep', 'keep\n');
  w('data/sub/y', 'y\n');
  w('opt/old', 'old\n');
  w('opt/dir/inner', 'inner\n');
  w('etc/gone-with-replacement', 'first version\n');
  w('boot/vmlinuz', 'kernel\n');
  w('sysroot/ostree/deploy', 'x\n');
  writeFileSync(Buffer.concat([Buffer.from(`${l0}/usr/lib/caf`), Buffer.from([0xe9])]), 'latin1 name\n');
  sh(`cd '${l0}/usr/lib' && setfattr -n user.latin1 -v 1 "$(printf 'caf\\351')"`);
  setx(w('usr/lib/back\\slash', 'backslash in the name\n'), 'user.b', 'back\\slash');
  symlinkSync('../usr/bin/big', join(l0, 'etc/sym'));
  execFileSync('mknod', [join(l0, 'etc/null'), 'c', '1', '3']);
  execFileSync('mknod', [join(l0, 'etc/sda'), 'b', '8', '0']);
  execFileSync('mknod', [join(l0, 'etc/wh-dev'), 'c', '0', '0']);
  execFileSync('mkfifo', [join(l0, 'etc/fifo')]);
  chownSync(join(l0, 'home/user'), 1234, 1235);
  chmodSync(join(l0, 'home/user'), 0o700);
  setx(join(l0, 'home/user'), 'user.dir', 'd');
  sh(`find '${l0}' -exec touch -h -d @${T0}.5 {} +`);
  const tars: string[] = [];
  tars.push(opts.rootEntry === false ? tarLayer(l0, join(dir, 'layer0.tar'), readdirSync(l0)) : tarLayer(l0, join(dir, 'layer0.tar')));
  tars.push(
    await craftTar(join(dir, 'layer1.tar'), [
      { name: 'data/newfile', content: 'new\n', mtime: T0 + 100 },
      { name: 'data/.wh..wh..opq' },
      { name: 'etc/.wh.sym' },
      { name: 'opt/.wh.dir' },
      { name: 'opt/.wh.old' },
      { name: 'usr/bin/big2', type: 'link', linkname: 'usr/bin/big' },
      { name: 'usr/share/doc/readme', content: 'implicit parents above me\n', mtime: T_NEWEST },
      { name: 'etc/conf.d', content: 'now a file\n', mtime: T0 + 1 },
      { name: 'etc/.wh.gone-with-replacement' },
      { name: 'etc/gone-with-replacement', content: 'second version\n', mtime: T0 + 2 },
    ]),
  );
  tars.push(
    await craftTar(join(dir, 'layer2.tar'), [
      { name: 'usr/bin/.wh.big' },
      { name: 'x/y/z', content: 'deep\n', mtime: T0 - 100000 },
      { name: 'usr/bin/small', content: 'replaced\n', mtime: T0 + 3, xattrs: { 'user.new': '1' } },
    ]),
  );
  if (opts.laterRoot) tars.push(await craftTar(join(dir, 'layer3.tar'), [{ name: './', type: 'directory', mode: 0o750, mtime: T0 + 7 }]));
  return tars;
}
