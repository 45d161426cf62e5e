/** Small stream helpers shared by the OCI readers and writers. */
import { PassThrough, Readable, type Duplex } from 'node:stream';
import { OciError, OciSizeError } from './errors.js';

/**
 * Pipe `first` through `stages` and return one Readable of the result. Any error of any stage
 * destroys every stage and is re-emitted (after `mapError`) on the returned stream, which never
 * emits 'end' in that case. Destroying the returned stream early destroys every stage (closing
 * file descriptors).
 */
export function chain(first: Readable, stages: Duplex[], mapError: (err: Error) => Error = (e) => e): Readable {
  const all: (Readable | Duplex)[] = [first, ...stages];
  const out = new PassThrough({ highWaterMark: 64 * 1024 });
  let done = false;
  const fail = (err: Error): void => {
    if (done) return;
    done = true;
    for (const s of all) s.destroy();
    out.destroy(mapError(err));
  };
  for (const s of all) s.on('error', fail);
  let prev: Readable = first;
  for (const s of stages) prev = prev.pipe(s);
  prev.pipe(out);
  out.on('close', () => {
    if (!done && !out.readableEnded) {
      done = true;
      for (const s of all) s.destroy();
    }
  });
  return out;
}

/** A Readable that fails with `err` on first read. */
export function failingStream(err: Error): Readable {
  return new Readable({
    read() {
      this.destroy(err);
    },
  });
}

/** Read a whole stream into memory, failing once it exceeds `limit` bytes (`what` names it). */
export async function readAll(stream: Readable, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of stream) {
      const b = c as Buffer;
      n += b.length;
      if (n > limit) throw new OciSizeError(`${what} (limit)`, limit, n, true);
      chunks.push(b);
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks, n);
}

/** Wrap a non-OciError (fs, zlib, zstd) with context; OciErrors pass through unchanged. */
export function contextError(err: Error, context: string, Ctor: new (msg: string, details?: Record<string, unknown>) => OciError = OciError): Error {
  if (err instanceof OciError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  return new Ctor(`${context}: ${err.message}`, { cause: err.message, ...(code ? { code } : {}) });
}
