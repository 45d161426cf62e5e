/**
 * composefs-dump(5) writer: tree → dumpfile text, as `composefs-info dump` prints it
 * (spec: composefs-format.md §2.10). Depth-first pre-order, children in strcmp order.
 *
 * Output is produced in ~64 KiB chunks so large trees stream with flat memory.
 */
import type { Writable } from 'node:stream';
import type { TreeNode } from '../../tree/model.js';
import { writeChunks } from '../../write-chunks.js';

const CHUNK = 64 * 1024;
const EMPTY = Buffer.alloc(0);
const HEXDIGITS = Buffer.from('0123456789abcdef');

/** Escape classes: 0 literal, 1 hex, 2 special (\\ \n \r \t). */
const CLASS = new Uint8Array(256);
const SPECIAL = new Uint8Array(256);
for (let c = 0; c < 256; c++) CLASS[c] = c < 0x21 || c > 0x7e ? 1 : 0;
for (const [c, e] of [
  [0x5c, 0x5c],
  [0x0a, 0x6e],
  [0x0d, 0x72],
  [0x09, 0x74],
] as const) {
  CLASS[c] = 2;
  SPECIAL[c] = e;
}

class Out {
  buf = Buffer.allocUnsafe(CHUNK * 2);
  pos = 0;
  readonly done: Buffer[] = [];

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.flush();
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
  }

  flush(): void {
    if (this.pos === 0) return;
    this.done.push(Buffer.from(this.buf.subarray(0, this.pos)));
    this.pos = 0;
  }

  ascii(s: string): void {
    this.ensure(s.length);
    this.pos += this.buf.write(s, this.pos, 'latin1');
  }

  byte(c: number): void {
    this.ensure(1);
    this.buf[this.pos++] = c;
  }

  /** Escaped bytes (composefs-info print_escaped). */
  escaped(v: Uint8Array, escapeEqual: boolean, loneDash: boolean): void {
    if (loneDash && v.length === 1 && v[0] === 0x2d) {
      this.ascii('\\x2d');
      return;
    }
    this.ensure(v.length * 4);
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < v.length; i++) {
      const c = v[i]!;
      const k = CLASS[c]!;
      if (k === 0 && !(escapeEqual && c === 0x3d)) {
        b[p++] = c;
      } else if (k === 2) {
        b[p++] = 0x5c;
        b[p++] = SPECIAL[c]!;
      } else {
        b[p++] = 0x5c;
        b[p++] = 0x78;
        b[p++] = HEXDIGITS[c >> 4]!;
        b[p++] = HEXDIGITS[c & 15]!;
      }
    }
    this.pos = p;
  }

  optional(v: Uint8Array | undefined): void {
    if (v === undefined) this.byte(0x2d);
    else this.escaped(v, false, true);
  }
}

function writeLine(out: Out, node: TreeNode, escapedPath: Buffer): void {
  const target = node.linkTo ? node.resolve() : node;
  out.ensure(escapedPath.length);
  escapedPath.copy(out.buf, out.pos);
  out.pos += escapedPath.length;
  out.ascii(
    ` ${target.size} ${node.linkTo ? '@' : ''}${(target.mode >>> 0).toString(8)} ${target.nlink >>> 0} ${
      target.uid >>> 0
    } ${target.gid >>> 0} ${target.rdev} ${target.mtimeSec}.${target.mtimeNsec >>> 0} `,
  );
  // composefs-info prints the target's path; for the root that path is empty
  out.optional(node.linkTo ? (target.parent ? target.path() : EMPTY) : target.payload);
  out.byte(0x20);
  out.optional(target.content);
  out.byte(0x20);
  if (target.digest) out.ascii(target.digest.toString('hex'));
  else out.byte(0x2d);
  for (const x of target.xattrs) {
    out.byte(0x20);
    out.escaped(x.key, true, false);
    out.byte(0x3d);
    out.escaped(x.value, true, false);
  }
  out.byte(0x0a);
}

const scratch = new Out();

/** Escape one path component the way dump lines print paths. */
function escapePath(v: Uint8Array): Buffer {
  scratch.pos = 0;
  scratch.done.length = 0;
  scratch.escaped(v, false, false);
  return Buffer.from(scratch.buf.subarray(0, scratch.pos));
}

/** Dumpfile text of a tree, in chunks of about 64 KiB. */
export function* dumpfileChunks(root: TreeNode): Generator<Buffer> {
  const out = new Out();
  const SLASH = Buffer.from('/');
  // Stack of (node, escaped path of its parent directory + '/').
  const stack: { node: TreeNode; prefix: Buffer }[] = [{ node: root, prefix: Buffer.alloc(0) }];
  while (stack.length) {
    const { node, prefix } = stack.pop()!;
    const isRoot = node === root;
    const path = isRoot ? SLASH : Buffer.concat([prefix, escapePath(node.name)]);
    writeLine(out, node, path);
    const kids = node.children();
    if (kids.length) {
      const childPrefix = isRoot ? SLASH : Buffer.concat([path, SLASH]);
      for (let i = kids.length - 1; i >= 0; i--) stack.push({ node: kids[i]!, prefix: childPrefix });
    }
    if (out.pos >= CHUNK) out.flush();
    while (out.done.length) yield out.done.shift()!;
  }
  out.flush();
  while (out.done.length) yield out.done.shift()!;
}

/** The whole dumpfile as one Buffer. */
export function writeDumpfile(root: TreeNode): Buffer {
  return Buffer.concat([...dumpfileChunks(root)]);
}

/** Stream the dumpfile to a Writable, respecting back-pressure. */
export async function writeDumpfileTo(root: TreeNode, out: Writable): Promise<void> {
  await writeChunks(dumpfileChunks(root), out);
}
