/**
 * Where blobs are read from. Three kinds, all read in place (no copies):
 *
 * - an OCI image layout directory (`oci:`): `index.json`, `blobs/sha256/<hex>`;
 * - an OCI archive (`oci-archive:`): the tar is indexed once (headers only, see tar-index.ts) and
 *   each blob is then a byte range of the tar file — no extraction, no temp space;
 * - a skopeo `dir:` directory (used for `docker://` pulls): `manifest.json`, blobs named `<hex>`.
 *   It keeps the registry's manifest bytes exactly (an `oci:` destination would make skopeo
 *   convert Docker schema 2 manifests to OCI and so change the manifest digest).
 *
 * Sources hand out *raw* (unverified) streams; verification lives in image.ts (openBlob).
 */
import { constants, createReadStream } from 'node:fs';
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BlobNotFoundError, OciFormatError } from './errors.js';
import { digestHex } from './digest.js';
import { failingStream } from './stream-util.js';
import { indexTar, type TarEntryLocation } from './tar-index.js';
import { checkDigest } from './types.js';

export interface BlobSource {
  /** Human-readable location for messages, e.g. `oci:/srv/img` or `oci-archive:/tmp/a.tar`. */
  readonly location: string;
  readonly kind: 'oci-dir' | 'oci-archive' | 'skopeo-dir';
  /** index.json bytes (layouts) — undefined for skopeo dir sources. */
  readIndexJson(): Promise<Buffer | undefined>;
  /** manifest.json bytes (skopeo dir sources only). */
  readTopManifest(): Promise<Buffer | undefined>;
  /** Unverified bytes of a blob; a missing blob errors the stream with BlobNotFoundError. */
  openRaw(digest: string): Readable;
  /** Whether the blob exists (with this size if given). */
  hasBlob(digest: string, size?: number): Promise<boolean>;
  close(): Promise<void>;
}

async function readOptional(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Open a file of an untrusted layout for reading: a FIFO must not block the open (O_NONBLOCK),
 * and anything but a regular file (directory, FIFO, device such as a symlink to /dev/zero) is an
 * OciFormatError naming `what`. Undefined when the file does not exist.
 */
async function openRegular(path: string, what: string): Promise<FileHandle | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new OciFormatError(`${what}: cannot open ${path}: ${(e as Error).message}`, { code });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new OciFormatError(`${what}: ${path} is not a regular file`);
    return fh;
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** A whole small file of an untrusted layout (regular files only, at most `limit` bytes). */
async function readSmallRegular(path: string, limit: number, what: string): Promise<Buffer | undefined> {
  const fh = await openRegular(path, what);
  if (!fh) return undefined;
  try {
    const { size } = await fh.stat();
    if (size > limit) throw new OciFormatError(`${what}: ${size} bytes is more than the ${limit} allowed`);
    const buf = Buffer.alloc(size);
    let n = 0;
    while (n < size) {
      const { bytesRead } = await fh.read(buf, n, size - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    return buf.subarray(0, n);
  } finally {
    await fh.close();
  }
}

/** Blob bytes of an untrusted layout: regular files only (see openRegular). */
function regularFileStream(path: string, digest: string, location: string): Readable {
  return Readable.from(
    (async function* () {
      const fh = await openRegular(path, `blob ${digest} in ${location}`);
      if (!fh) throw new BlobNotFoundError(digest, location);
      yield* fh.createReadStream({ highWaterMark: 256 * 1024 });
    })(),
    { objectMode: false },
  );
}

/** Largest index.json accepted (as a manifest). */
const MAX_INDEX_JSON = 4 << 20;

function fileStream(path: string, digest: string, location: string, start?: number, size?: number): Readable {
  if (size === 0) return Readable.from([]);
  const s = createReadStream(path, start === undefined ? { highWaterMark: 256 * 1024 } : { start, end: start + size! - 1, highWaterMark: 256 * 1024 });
  const out = s as Readable;
  // Map ENOENT to a BlobNotFoundError naming the digest: wrap by re-emitting on a new error.
  const origEmit = out.emit.bind(out);
  out.emit = ((ev: string | symbol, ...args: unknown[]) => {
    if (ev === 'error' && (args[0] as NodeJS.ErrnoException)?.code === 'ENOENT')
      return origEmit('error', new BlobNotFoundError(digest, location));
    return origEmit(ev, ...args);
  }) as typeof out.emit;
  return out;
}

/** `oci:` layout directory. */
export class OciDirSource implements BlobSource {
  readonly kind = 'oci-dir' as const;
  readonly location: string;
  constructor(readonly dir: string) {
    this.location = `oci:${dir}`;
  }
  blobPath(digest: string): string {
    checkDigest(digest, `${this.location} blob`);
    return join(this.dir, 'blobs', 'sha256', digestHex(digest));
  }
  async readIndexJson(): Promise<Buffer | undefined> {
    const b = await readSmallRegular(join(this.dir, 'index.json'), MAX_INDEX_JSON, `${this.location} index.json`);
    if (b === undefined) {
      const st = await stat(this.dir).catch(() => undefined);
      throw new OciFormatError(
        st ? `${this.location}: not an OCI image layout (no index.json)` : `${this.location}: directory does not exist`,
      );
    }
    return b;
  }
  async readTopManifest(): Promise<undefined> {
    return undefined;
  }
  openRaw(digest: string): Readable {
    return regularFileStream(this.blobPath(digest), digest, this.location);
  }
  async hasBlob(digest: string, size?: number): Promise<boolean> {
    const st = await stat(this.blobPath(digest)).catch(() => undefined);
    return !!st && st.isFile() && (size === undefined || st.size === size);
  }
  async close(): Promise<void> {}
}

/** `oci-archive:` tar, read in place by byte ranges. */
export class OciArchiveSource implements BlobSource {
  readonly kind = 'oci-archive' as const;
  readonly location: string;
  private constructor(
    readonly file: string,
    private readonly entries: Map<string, TarEntryLocation>,
  ) {
    this.location = `oci-archive:${file}`;
  }
  static async open(file: string): Promise<OciArchiveSource> {
    const st = await stat(file).catch(() => undefined);
    if (!st) throw new OciFormatError(`oci-archive:${file}: file does not exist`);
    if (!st.isFile()) throw new OciFormatError(`oci-archive:${file}: not a regular file`);
    return new OciArchiveSource(file, await indexTar(file));
  }
  private lookup(name: string): TarEntryLocation | undefined {
    let e = this.entries.get(name);
    for (let hops = 0; e && e.type === '1' && e.linkname !== undefined && hops < 8; hops++)
      e = this.entries.get(e.linkname.replace(/^(\.\/|\/)+/, ''));
    if (e && e.type !== '0' && e.type !== '7') return undefined;
    return e;
  }
  async readIndexJson(): Promise<Buffer | undefined> {
    const e = this.lookup('index.json');
    if (!e) throw new OciFormatError(`${this.location}: not an OCI archive (no index.json entry)`);
    if (e.size > 4 << 20) throw new OciFormatError(`${this.location}: index.json is too large (${e.size} bytes)`);
    const chunks: Buffer[] = [];
    for await (const c of fileStream(this.file, 'index.json', this.location, e.offset, e.size)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }
  async readTopManifest(): Promise<undefined> {
    return undefined;
  }
  openRaw(digest: string): Readable {
    checkDigest(digest, `${this.location} blob`);
    const e = this.lookup(`blobs/sha256/${digestHex(digest)}`);
    if (!e) return failingStream(new BlobNotFoundError(digest, this.location));
    return fileStream(this.file, digest, this.location, e.offset, e.size);
  }
  async hasBlob(digest: string, size?: number): Promise<boolean> {
    const e = this.lookup(`blobs/sha256/${digestHex(digest)}`);
    return !!e && (size === undefined || e.size === size);
  }
  async close(): Promise<void> {}
}

/** skopeo `dir:` directory: manifest.json + blobs named by hex. */
export class SkopeoDirSource implements BlobSource {
  readonly kind = 'skopeo-dir' as const;
  constructor(
    readonly dir: string,
    readonly location: string,
    private readonly onClose?: () => Promise<void>,
  ) {}
  private blobPath(digest: string): string {
    checkDigest(digest, `${this.location} blob`);
    return join(this.dir, digestHex(digest));
  }
  async readIndexJson(): Promise<undefined> {
    return undefined;
  }
  async readTopManifest(): Promise<Buffer> {
    const b = await readOptional(join(this.dir, 'manifest.json'));
    if (!b) throw new OciFormatError(`${this.location}: skopeo dir ${this.dir} has no manifest.json`);
    return b;
  }
  openRaw(digest: string): Readable {
    return fileStream(this.blobPath(digest), digest, this.location);
  }
  async hasBlob(digest: string, size?: number): Promise<boolean> {
    const st = await stat(this.blobPath(digest)).catch(() => undefined);
    return !!st && st.isFile() && (size === undefined || st.size === size);
  }
  async close(): Promise<void> {
    await this.onClose?.();
  }
}
