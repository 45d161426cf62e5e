/**
 * Worker for the dumpfile / EROFS reader fuzzing (composefs.ts): parses (and builds) one input per
 * message, so a crash or a hang of the parser is seen as the process dying or not answering.
 */
import { parseDumpfileSync } from '../../../src/composefs/dumpfile/reader.js';
import { buildErofs, type ErofsWriteOptions } from '../../../src/composefs/erofs/writer.js';
import { readErofsImageSync } from '../../../src/composefs/erofs/reader.js';
import { OstreeOciError } from '../../../src/errors.js';
import { walk } from '../../../src/tree/model.js';

export interface CfsRequest {
  id: number;
  op: 'dumpfile' | 'erofs';
  data: Uint8Array;
  strict?: boolean;
  args?: string[];
}

export interface CfsReply {
  id: number;
  ok: boolean;
  image?: Uint8Array;
  /** EROFS: an entry name a checkout could not use safely. */
  badName?: string;
  error?: { name: string; message: string; typed: boolean; stack?: string };
}

function toOpts(args: string[]): ErofsWriteOptions {
  const o: ErofsWriteOptions = {};
  for (const a of args) {
    const m = /^--(min|max)-version=(-?\d+)$/.exec(a);
    if (m?.[1] === 'min') o.minVersion = Number(m[2]);
    else if (m) o.maxVersion = Number(m[2]);
  }
  return o;
}

function handle(m: CfsRequest): CfsReply {
  const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  if (m.op === 'dumpfile') {
    const tree = parseDumpfileSync(data, { strict: Boolean(m.strict) });
    return { id: m.id, ok: true, image: buildErofs(tree, toOpts(m.args ?? [])).toBuffer() };
  }
  const root = readErofsImageSync(data);
  for (const n of walk(root)) {
    if (n === root) continue;
    const name = n.name;
    if (name.length === 0 || name.includes(0x2f) || name.includes(0) || name.equals(Buffer.from('.')) || name.equals(Buffer.from('..'))) {
      return { id: m.id, ok: true, badName: JSON.stringify(name.toString('latin1')) };
    }
  }
  return { id: m.id, ok: true };
}

process.on('message', (m: CfsRequest) => {
  let r: CfsReply;
  try {
    r = handle(m);
  } catch (e) {
    const err = e as Error;
    r = {
      id: m.id,
      ok: false,
      error: { name: err?.constructor?.name ?? typeof e, message: String(err?.message ?? e), typed: e instanceof OstreeOciError, ...(e instanceof OstreeOciError ? {} : { stack: String(err?.stack ?? '') }) },
    };
  }
  process.send!(r);
});
process.send!({ id: 0, ok: true } satisfies CfsReply);
