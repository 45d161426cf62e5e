/**
 * Decompression-bomb guard: a pass-through placed after a layer's decompressor that fails as soon
 * as more bytes come out than `limits.maxLayerRatio` × the layer's compressed size (with
 * `layerRatioFloor` always allowed), naming the cap and the layer.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { LimitError, maxDecompressed, type ImportLimits } from '../limits.js';

export class DecompressedSizeLimit extends Transform {
  private count = 0;
  private readonly max: number;
  constructor(
    limits: ImportLimits,
    compressedSize: number,
    private readonly what: string,
  ) {
    super();
    this.max = maxDecompressed(limits, compressedSize);
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.count += chunk.length;
    if (this.count > this.max) {
      cb(new LimitError('maxLayerRatio', this.max, this.count, `${this.what}: decompressed size (at least)`));
      return;
    }
    cb(null, chunk);
  }
}
