/**
 * Index a tar file by entry without reading file contents: walk the 512-byte headers with
 * positional reads, skipping over data. Handles ustar (with prefix), GNU long names (`L`/`K`),
 * PAX extended headers (`x`: path, linkpath, size; `g` ignored) and base-256 sizes. Names are
 * normalized: leading `./` and `/` removed, trailing `/` removed.
 *
 * Used to read oci-archive files in place: blobs are then read as byte ranges of the tar.
 */
import { open } from 'node:fs/promises';
import { OciFormatError } from './errors.js';
import { EntryExtensions, paxDecimal } from './tar-pax.js';

export interface TarEntryLocation {
  name: string;
  /** Tar typeflag: '0' regular file, '5' directory, '1' hardlink, '2' symlink, … */
  type: string;
  /** Offset of the first data byte in the tar file. */
  offset: number;
  size: number;
  linkname?: string;
}

const BLOCK = 512;

function cstr(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const nul = s.indexOf(0);
  return (nul < 0 ? s : s.subarray(0, nul)).toString('utf8');
}

function parseNumeric(b: Buffer, start: number, len: number, what: string): number {
  const f = b.subarray(start, start + len);
  if (f[0]! & 0x80) {
    // base-256, big-endian; positive only
    let v = 0;
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i]!;
    if (f[0] === 0xff || !Number.isSafeInteger(v)) throw new OciFormatError(`${what}: unsupported base-256 number`);
    return v + (f[0]! & 0x7f) * 256 ** (f.length - 1);
  }
  const s = f.toString('latin1').replace(/[\0 ]+$/, '').replace(/^[ ]+/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new OciFormatError(`${what}: invalid octal field ${JSON.stringify(s)}`);
  return parseInt(s, 8);
}

export function normalizeTarName(name: string): string {
  let n = name;
  for (;;) {
    if (n.startsWith('./')) n = n.slice(2);
    else if (n.startsWith('/')) n = n.slice(1);
    else break;
  }
  while (n.endsWith('/')) n = n.slice(0, -1);
  return n === '.' ? '' : n;
}

const COMPRESSED: Array<[magic: number[], name: string, tool: string]> = [
  [[0x1f, 0x8b], 'gzip', 'gunzip'],
  [[0x28, 0xb5, 0x2f, 0xfd], 'zstd', 'unzstd'],
  [[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz', 'unxz'],
  [[0x42, 0x5a, 0x68], 'bzip2', 'bunzip2'],
];

/**
 * An archive is read in place (entries by offset), so it must be a plain tar. A compressed one
 * (which containers/image would decompress on the fly) is named as such rather than failing on a
 * tar header that is not one.
 */
function refuseCompressed(first: Buffer, path: string): void {
  for (const [magic, name, tool] of COMPRESSED) {
    if (magic.every((b, i) => first[i] === b)) {
      throw new OciFormatError(`${path} is ${name}-compressed; oci-archive: reads an uncompressed tar (decompress it first, e.g. with ${tool})`, { path, compression: name });
    }
  }
}

/** Read every header of the tar at `path`; later entries of the same name win. */
export async function indexTar(path: string): Promise<Map<string, TarEntryLocation>> {
  const fh = await open(path, 'r');
  try {
    const fileSize = (await fh.stat()).size;
    const entries = new Map<string, TarEntryLocation>();
    const hdr = Buffer.alloc(BLOCK);
    let pos = 0;
    const newExtensions = (): EntryExtensions =>
      new EntryExtensions((msg) => {
        throw new OciFormatError(`tar ${path}: ${msg}`);
      });
    let ext = newExtensions();
    const readData = async (off: number, size: number, what: string): Promise<Buffer> => {
      if (size > 16 << 20) throw new OciFormatError(`${what}: extended header of ${size} bytes is too large`);
      const b = Buffer.alloc(size);
      const { bytesRead } = await fh.read(b, 0, size, off);
      if (bytesRead !== size) throw new OciFormatError(`${what}: truncated`);
      return b;
    };
    for (;;) {
      const where = `tar ${path} header at offset ${pos}`;
      if (pos + BLOCK > fileSize) {
        if (pos === fileSize) break; // no end-of-archive blocks; accept like GNU tar (with warning there)
        throw new OciFormatError(`${where}: truncated (file is ${fileSize} bytes)`);
      }
      await fh.read(hdr, 0, BLOCK, pos);
      if (pos === 0) refuseCompressed(hdr, path);
      if (hdr.every((x) => x === 0)) break;
      // checksum: sum of header bytes with the checksum field read as spaces
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : hdr[i]!;
      const stored = parseNumeric(hdr, 148, 8, `${where} checksum`);
      if (stored !== sum) throw new OciFormatError(`${where}: header checksum mismatch (stored ${stored}, computed ${sum})`);
      const type = String.fromCharCode(hdr[156]!) === '\0' ? '0' : String.fromCharCode(hdr[156]!);
      let size = parseNumeric(hdr, 124, 12, `${where} size`);
      const paxSize = ext.pax('size')?.toString('utf8');
      if (paxSize !== undefined) {
        const v = paxDecimal(paxSize);
        if (v === undefined) throw new OciFormatError(`${where}: bad PAX size ${JSON.stringify(paxSize)}`);
        size = v;
      }
      const dataOff = pos + BLOCK;
      const next = dataOff + Math.ceil(size / BLOCK) * BLOCK;
      if (dataOff + size > fileSize) throw new OciFormatError(`${where}: entry data runs past end of file (truncated archive)`);
      if (type === 'L' || type === 'K') {
        ext.addLong(type, await readData(dataOff, size, where), pos);
      } else if (type === 'x') {
        ext.addPax(await readData(dataOff, size, where), pos);
      } else if (type === 'g') {
        // global PAX header: nothing we need
      } else {
        let name = cstr(hdr, 0, 100);
        const magic = hdr.subarray(257, 263).toString('latin1');
        if (magic === 'ustar\0') {
          const prefix = cstr(hdr, 345, 155);
          if (prefix) name = `${prefix}/${name}`;
        }
        name = ext.path(Buffer.from(name)).toString('utf8');
        const linkname = ext.linkpath(Buffer.from(cstr(hdr, 157, 100))).toString('utf8');
        const e: TarEntryLocation = { name: normalizeTarName(name), type, offset: dataOff, size };
        if (linkname !== '') e.linkname = linkname;
        entries.set(e.name, e);
        ext = newExtensions();
      }
      pos = next;
    }
    return entries;
  } finally {
    await fh.close();
  }
}
