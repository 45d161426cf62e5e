/** Writing generated chunks to a Writable that may be slower than the generator. */
import type { Writable } from 'node:stream';

/**
 * Write every chunk to `out`, waiting for 'drain' whenever it asks to (so memory stays flat);
 * an 'error' while waiting rejects. `observe` sees each chunk first (e.g. to hash it).
 */
export async function writeChunks(chunks: Iterable<Buffer>, out: Writable, observe?: (chunk: Buffer) => void): Promise<void> {
  for (const chunk of chunks) {
    observe?.(chunk);
    if (out.write(chunk)) continue;
    await new Promise<void>((resolve, reject) => {
      const onDrain = (): void => {
        out.off('error', onError);
        resolve();
      };
      const onError = (e: Error): void => {
        out.off('drain', onDrain);
        reject(e);
      };
      out.once('drain', onDrain);
      out.once('error', onError);
    });
  }
}
