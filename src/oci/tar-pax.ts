/**
 * PAX extended header records (POSIX.1-2001 `x` entries), read as strictly as tar-rs and Go's
 * archive/tar read them, so that no other reader of the same tar sees other names or sizes. Shared
 * by every tar reader here: the oci-archive index, the ostree import reader and the composefs
 * layer reader.
 */

/**
 * The records of a PAX extended header body: `"<len> <key>=<value>\n"`, `<len>` decimal digits
 * counting the whole record, keys and values as raw bytes (copies). Strict like tar-rs and Go's
 * archive/tar: anything else (a length that is not plain digits, or does not end the record at a
 * newline, a record without `=` or with an empty key) is passed to `fail`, with its byte offset.
 * NUL padding after the last record is allowed (some writers add it).
 */
export function parsePaxRecords(data: Buffer, fail: (msg: string) => never): Array<{ key: Buffer; value: Buffer }> {
  const out: Array<{ key: Buffer; value: Buffer }> = [];
  let off = 0;
  while (off < data.length) {
    if (data[off] === 0) break;
    const sp = data.indexOf(0x20, off);
    if (sp < 0) fail(`malformed PAX record at byte ${off}`);
    const lenText = data.subarray(off, sp).toString('latin1');
    const len = /^\d+$/.test(lenText) ? Number(lenText) : NaN;
    if (!Number.isSafeInteger(len) || len <= sp - off + 1 || off + len > data.length || data[off + len - 1] !== 0x0a) {
      fail(`malformed PAX record at byte ${off}`);
    }
    const rec = data.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) fail(`PAX record without "=" at byte ${off}`);
    out.push({ key: Buffer.from(rec.subarray(0, eq)), value: Buffer.from(rec.subarray(eq + 1)) });
    off += len;
  }
  return out;
}

/**
 * A PAX numeric value (`size`, `uid`, `gid`): plain decimal digits and a safe integer, else
 * undefined. `Number()` would also take `0x10`, `1e3`, ` 5` or an empty string.
 */
export function paxDecimal(text: string): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}
