/**
 * Writing `oci-archive:` files: an OCI layout directory streamed into a tar.
 *
 * Deterministic: entries in byte order of their full path, depth-first like a lexical directory
 * walk (`blobs/`, `blobs/sha256/`, `blobs/sha256/<hex>`…, `index.json`, `oci-layout`); ustar
 * headers with mode 0755 (dirs) / 0644 (files), uid/gid 0, empty uname/gname, mtime 0. The tar is
 * written to a temp file next to the target, fsynced, then renamed over it, so readers never see
 * a partial archive. An existing archive is replaced (as skopeo does), not merged.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { contextError } from './stream-util.js';

const EPOCH = new Date(0);

async function walk(root: string, rel: string, out: { rel: string; dir: boolean; size: number }[]): Promise<void> {
  const names = (await readdir(join(root, rel))).filter((n) => !n.startsWith('.ostree-oci-tmp-'));
  names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const n of names) {
    const r = rel === '' ? n : `${rel}/${n}`;
    const st = await stat(join(root, r));
    if (st.isDirectory()) {
      out.push({ rel: r, dir: true, size: 0 });
      await walk(root, r, out);
    } else if (st.isFile()) {
      out.push({ rel: r, dir: false, size: st.size });
    }
  }
}

/** Tar the layout directory `dir` into `target` atomically (see module comment). */
export async function packLayoutToArchive(dir: string, target: string): Promise<void> {
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${randomBytes(6).toString('hex')}`);
  try {
    const entries: { rel: string; dir: boolean; size: number }[] = [];
    await walk(dir, '', entries);
    const pack = tar.pack();
    const out = createWriteStream(tmp, { flags: 'wx' });
    const written = pipeline(pack, out);
    const feed = (async () => {
      for (const e of entries) {
        const header = {
          name: e.dir ? `${e.rel}/` : e.rel,
          mode: e.dir ? 0o755 : 0o644,
          uid: 0,
          gid: 0,
          uname: '',
          gname: '',
          mtime: EPOCH,
          type: e.dir ? ('directory' as const) : ('file' as const),
          size: e.size,
        };
        if (e.dir) {
          await new Promise<void>((res, rej) => pack.entry(header, (err) => (err ? rej(err) : res())));
        } else {
          let entryDone!: Promise<void>;
          const sink = pack.entry(header);
          entryDone = new Promise<void>((res, rej) => {
            sink.on('finish', () => res());
            sink.on('error', rej);
          });
          await pipeline(createReadStream(join(dir, e.rel)), sink);
          await entryDone;
        }
      }
      pack.finalize();
    })();
    feed.catch((err) => pack.destroy(err));
    await Promise.all([feed, written]);
    const fh = await open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {});
    throw contextError(e as Error, `oci-archive:${target}: writing archive`);
  }
}
