/**
 * A streaming tar builder with tar-rs's `Builder` operations (append_data, append_link,
 * append_pax_extensions, finish) over the header emulation in tar-header.ts.
 *
 * Output is a Readable with back-pressure: the producer awaits each write, and a write only
 * resolves once the consumer has room. Small pieces (headers, small files) are batched into
 * ~128 KiB chunks; large file data is passed through without copying. Memory stays flat however
 * large the files are.
 */
import { Readable } from 'node:stream';
import { OstreeOciError } from '../errors.js';
import { END_OF_ARCHIVE, Header, padding, paxExtensionBytes, prepareHeaderLink, prepareHeaderLinkLiteral, prepareHeaderPath } from './tar-header.js';

const BATCH = 128 * 1024;
const YIELD_EVERY = 512 * 1024;

/** Thrown into the producer when the consumer went away (destroyed the stream). */
export class TarOutputClosedError extends OstreeOciError {}

export class TarOutput extends Readable {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private wake: (() => void) | null = null;
  private closedErr: Error | null = null;
  /** Bytes handed to the consumer so far plus the batch in progress. */
  bytes = 0;

  constructor() {
    // Room to run ahead of the compressor (which takes ~1 MiB batches), so both stay busy.
    super({ highWaterMark: 4 << 20 });
  }

  override _read(): void {
    const r = this.wake;
    this.wake = null;
    r?.();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.closedErr = err ?? new TarOutputClosedError('tar output stream was closed by its consumer');
    const r = this.wake;
    this.wake = null;
    r?.();
    cb(err);
  }

  private sinceYield = 0;

  private async pushOut(b: Buffer): Promise<void> {
    if (this.closedErr) throw this.closedErr;
    if (!this.push(b)) {
      await new Promise<void>((res) => (this.wake = res));
      if (this.closedErr) throw this.closedErr;
      this.sinceYield = 0;
    } else if ((this.sinceYield += b.length) >= YIELD_EVERY) {
      // The producer runs in microtasks; let the event loop deliver I/O and worker messages
      // (e.g. a compressor's finished batch) now and then instead of only when the buffer is full.
      this.sinceYield = 0;
      await new Promise<void>((res) => setImmediate(res));
      if (this.closedErr) throw this.closedErr;
    }
  }

  /** Queue bytes; large buffers go out directly, small ones are batched. */
  async write(b: Buffer): Promise<void> {
    if (b.length === 0) return;
    this.bytes += b.length;
    if (b.length >= BATCH / 2) {
      await this.flush();
      await this.pushOut(b);
      return;
    }
    this.pending.push(b);
    this.pendingLen += b.length;
    if (this.pendingLen >= BATCH) await this.flush();
  }

  async writeAll(parts: Buffer[]): Promise<void> {
    for (const p of parts) await this.write(p);
  }

  async flush(): Promise<void> {
    if (this.pendingLen === 0) return;
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingLen);
    this.pending = [];
    this.pendingLen = 0;
    await this.pushOut(data);
  }

  /** Flush and end the stream. */
  async end(): Promise<void> {
    await this.flush();
    if (this.closedErr) throw this.closedErr;
    this.push(null);
  }

  /** Run `produce` against this output; errors destroy the stream. Returns this stream. */
  static run(produce: (out: TarOutput) => Promise<void>): TarOutput {
    const out = new TarOutput();
    produce(out).then(
      () => out.end().catch(() => {}),
      (err: Error) => {
        if (!out.destroyed) out.destroy(err);
      },
    );
    return out;
  }
}

/** Data source of an entry: bytes in memory, or a stream with a known length. */
export type EntryData = Buffer | { stream: AsyncIterable<Buffer> & { destroy?: () => void }; length: number; what: string };

/** tar-rs Builder over a TarOutput. */
export class TarBuilder {
  constructor(readonly out: TarOutput) {}

  /** `append_data`: path (with GNU L if long), checksum, header, data, padding. */
  async appendData(h: Header, path: string, data: EntryData | null = null): Promise<void> {
    const pre = prepareHeaderPath(h, path);
    h.setCksum();
    await this.out.writeAll(pre);
    await this.out.write(Buffer.from(h.buf)); // copy: callers reuse the header
    await this.writeData(data);
  }

  /**
   * `append_link`: path, link name (with GNU K if long), checksum, header. With `literal` the
   * target is kept byte for byte (prepareHeaderLinkLiteral) instead of normalized as tar-rs does.
   */
  async appendLink(h: Header, path: string, target: string, opts: { literal?: boolean } = {}): Promise<void> {
    const pre = prepareHeaderPath(h, path);
    pre.push(...(opts.literal ? prepareHeaderLinkLiteral(h, target) : prepareHeaderLink(h, target)));
    h.setCksum();
    await this.out.writeAll(pre);
    await this.out.write(Buffer.from(h.buf)); // copy: callers reuse the header
  }

  /** `append_pax_extensions` (nothing for an empty list). */
  async appendPax(records: Array<[string, Buffer]>): Promise<void> {
    await this.out.writeAll(paxExtensionBytes(records));
  }

  /** `finish`: two zero blocks. */
  async finish(): Promise<void> {
    await this.out.write(END_OF_ARCHIVE);
  }

  private async writeData(data: EntryData | null): Promise<void> {
    if (!data) return;
    if (Buffer.isBuffer(data)) {
      await this.out.write(data);
      await this.out.write(padding(data.length));
      return;
    }
    let n = 0;
    try {
      for await (const chunk of data.stream) {
        n += chunk.length;
        if (n > data.length) throw new OstreeOciError(`${data.what}: has more than the ${data.length} bytes its header announced`);
        await this.out.write(chunk);
      }
    } finally {
      data.stream.destroy?.();
    }
    if (n !== data.length) throw new OstreeOciError(`${data.what}: has ${n} bytes, its header announced ${data.length}`);
    await this.out.write(padding(n));
  }
}
