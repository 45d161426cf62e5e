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
import { open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { registerTempPath } from '../cleanup.js';
import { contextError } from './stream-util.js';

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

/** ustar header as tar-stream 3 encodes it (names here are short ASCII: no prefix / PAX). */
function ustarHeader(name: string, dir: boolean, size: number): Buffer {
  if (name.length > 100 || Buffer.byteLength(name) !== name.length) throw new Error(`tar entry name ${JSON.stringify(name)} too long or not ASCII`);
  const buf = Buffer.alloc(512);
  const oct = (val: number, n: number): string => {
    const v = val.toString(8);
    return v.length > n ? '7'.repeat(n) + ' ' : '0'.repeat(n - v.length) + v + ' ';
  };
  buf.write(name, 0, 'latin1');
  buf.write(oct(dir ? 0o755 : 0o644, 6), 100, 'latin1');
  buf.write(oct(0, 6), 108, 'latin1');
  buf.write(oct(0, 6), 116, 'latin1');
  if (size.toString(8).length > 11) {
    buf[124] = 0x80;
    let num = size;
    for (let i = 11; i > 0; i--) {
      buf[124 + i] = num & 0xff;
      num = Math.floor(num / 0x100);
    }
  } else buf.write(oct(size, 11), 124, 'latin1');
  buf.write(oct(0, 11), 136, 'latin1');
  buf[156] = dir ? 0x35 : 0x30;
  buf.write('ustar\x0000', 257, 'latin1');
  buf.write(oct(0, 6), 329, 'latin1');
  buf.write(oct(0, 6), 337, 'latin1');
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += buf[i]!;
  for (let i = 156; i < 512; i++) sum += buf[i]!;
  buf.write(oct(sum, 6), 148, 'latin1');
  return buf;
}

const COPY_CHUNK = 4 << 20;

/**
 * Tar the layout directory `dir` into `target` atomically (see module comment); `name` names
 * the archive in messages. Headers are
 * encoded here and each blob is copied with large positional reads/writes (no per-chunk stream
 * machinery); the bytes are the same as tar-stream's pack produces.
 */
export async function packLayoutToArchive(dir: string, target: string, name = `oci-archive:${target}`): Promise<void> {
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${randomBytes(6).toString('hex')}`);
  const unregister = registerTempPath(tmp);
  try {
    const entries: { rel: string; dir: boolean; size: number }[] = [];
    await walk(dir, '', entries);
    const out = await open(tmp, 'wx');
    try {
      let pos = 0;
      let small: Buffer[] = [];
      let smallLen = 0;
      const flushSmall = async (): Promise<void> => {
        if (smallLen === 0) return;
        const b = small.length === 1 ? small[0]! : Buffer.concat(small, smallLen);
        small = [];
        smallLen = 0;
        await writeFully(out, b, pos);
        pos += b.length;
      };
      const queue = (b: Buffer): void => {
        small.push(b);
        smallLen += b.length;
      };
      let buf: Buffer | undefined;
      for (const e of entries) {
        queue(ustarHeader(e.dir ? `${e.rel}/` : e.rel, e.dir, e.size));
        if (e.dir || e.size === 0) continue;
        const pad = (512 - (e.size % 512)) % 512;
        if (e.size <= 64 * 1024) {
          const data = await readFile(join(dir, e.rel));
          if (data.length !== e.size) throw new Error(`${e.rel} changed size while archiving`);
          queue(data);
        } else {
          await flushSmall();
          buf ??= Buffer.allocUnsafe(COPY_CHUNK);
          const src = await open(join(dir, e.rel), 'r');
          try {
            let done = 0;
            while (done < e.size) {
              const { bytesRead } = await src.read(buf, 0, Math.min(COPY_CHUNK, e.size - done), done);
              if (bytesRead === 0) throw new Error(`${e.rel} changed size while archiving`);
              await writeFully(out, buf.subarray(0, bytesRead), pos);
              pos += bytesRead;
              done += bytesRead;
            }
          } finally {
            await src.close();
          }
        }
        if (pad > 0) queue(Buffer.alloc(pad));
      }
      queue(Buffer.alloc(1024));
      await flushSmall();
      await out.sync();
    } finally {
      await out.close();
    }
    await rename(tmp, target);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {});
    throw contextError(e as Error, `${name}: writing archive`);
  } finally {
    unregister();
  }
}

async function writeFully(fh: FileHandle, b: Buffer, pos: number): Promise<void> {
  let off = 0;
  while (off < b.length) {
    const { bytesWritten } = await fh.write(b, off, b.length - off, pos + off);
    off += bytesWritten;
  }
}
