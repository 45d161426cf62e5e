/**
 * Hand-made tars for reader tests: a PAX extended header with exactly the given bytes, then one
 * regular file. Built with the writer's Header (tar-rs layout), so only the PAX body is unusual.
 */
import { END_OF_ARCHIVE, EntryType, Header, padding, prepareHeaderPath } from '../../src/container/tar-header.js';

/**
 * One PAX record `"<len> <kv>\n"` whose length, written by `fmt` (decimal by default), is its true
 * length — so a reader that took any text JavaScript's Number() accepts would read it fine.
 */
export function paxRecord(kv: string, fmt: (n: number) => string = String): string {
  let n = kv.length + 3;
  while (`${fmt(n)} ${kv}\n`.length !== n) n = `${fmt(n)} ${kv}\n`.length;
  return `${fmt(n)} ${kv}\n`;
}

/** A tar: PAX header holding `paxBody` (latin1), then regular file `name` with `data`. */
export function tarWithPax(paxBody: string, name = 'file', data: Buffer = Buffer.alloc(0)): Buffer {
  const body = Buffer.from(paxBody, 'latin1');
  const x = Header.ustar();
  x.setEntryType(EntryType.XHeader);
  x.setMode(0o644);
  x.setSize(body.length);
  x.setCksum();
  const f = Header.gnu();
  prepareHeaderPath(f, name);
  f.setEntryType(EntryType.Regular);
  f.setMode(0o644);
  f.setSize(data.length);
  f.setCksum();
  return Buffer.concat([x.buf, body, padding(body.length), f.buf, data, padding(data.length), END_OF_ARCHIVE]);
}
