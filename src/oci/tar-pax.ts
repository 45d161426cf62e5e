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

/**
 * The GNU long name (`L`), long link (`K`) and PAX (`x`) headers that precede one tar entry,
 * collected and resolved the same way by every tar reader here (the oci-archive index, the ostree
 * import reader, the composefs layer reader), so that no two of them, and no mainstream reader,
 * see different entries in the same bytes:
 *
 *  - a second long name, long link or PAX header before one entry is refused, and so is a PAX key
 *    given twice (tar-rs refuses the former; Go's archive/tar keeps the last one; GNU tar merges);
 *  - a long name/link wins over PAX `path`/`linkpath`, which win over the header's fields (the
 *    order of tar-rs and of Go's archive/tar).
 */
export class EntryExtensions {
  longName: Buffer | undefined;
  longLink: Buffer | undefined;
  /** The PAX records of the entry's `x` header, in order (keys unique). */
  records: Array<{ key: Buffer; value: Buffer }> = [];
  private sawPax = false;
  /** Each record's value by its key (latin1: byte-exact). */
  private readonly byKey = new Map<string, Buffer>();

  constructor(private readonly fail: (msg: string) => never) {}

  /** The body of an `L` or `K` header at byte `offset` (the name ends at its first NUL). */
  addLong(type: 'L' | 'K', body: Buffer, offset: number): void {
    const kind = `GNU long ${type === 'L' ? 'name' : 'link'}`;
    if ((type === 'L' ? this.longName : this.longLink) !== undefined) this.fail(`two ${kind} headers before one entry (second at byte ${offset})`);
    const nul = body.indexOf(0);
    const s = Buffer.from(nul < 0 ? body : body.subarray(0, nul));
    if (type === 'L') this.longName = s;
    else this.longLink = s;
  }

  /** The body of an `x` header at byte `offset`. */
  addPax(body: Buffer, offset: number): void {
    if (this.sawPax) this.fail(`two PAX headers before one entry (second at byte ${offset})`);
    this.sawPax = true;
    for (const r of parsePaxRecords(body, (msg) => this.fail(`PAX header at byte ${offset}: ${msg}`))) {
      const k = r.key.toString('latin1');
      if (this.byKey.has(k)) this.fail(`PAX header at byte ${offset}: record ${JSON.stringify(r.key.toString('utf8'))} given twice`);
      this.byKey.set(k, r.value);
      this.records.push(r);
    }
  }

  /** The value of PAX record `key`, if given. */
  pax(key: string): Buffer | undefined {
    return this.byKey.get(key);
  }

  /** The entry's name: long name, else PAX `path`, else the header's (ustar prefix + name). */
  path(fromHeader: Buffer): Buffer {
    return this.longName ?? this.pax('path') ?? fromHeader;
  }

  /** The entry's link target: long link, else PAX `linkpath`, else the header's. */
  linkpath(fromHeader: Buffer): Buffer {
    return this.longLink ?? this.pax('linkpath') ?? fromHeader;
  }
}
