/**
 * Independent checks for composefs repositories, written from composefs-rs' documentation
 * (doc/splitstream.md, doc/repository.md) rather than from src/cfs: a splitstream parser that
 * decompresses with the `zstd` CLI, fs-verity digests from the `fsverity` CLI, and a parser for
 * `composefs-info dump` lines (oracle chroot).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers/tmp.js';

export const ORACLE = join(ROOT, 'scripts', 'oracle.sh');
export const oracle = (...args: string[]): string => execFileSync(ORACLE, ['run', ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });

/** `fsverity digest` of files (batched), path → hex. */
export function fsverityCli(paths: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < paths.length; i += 200) {
    const batch = paths.slice(i, i + 200);
    const text = execFileSync('fsverity', ['digest', '--hash-alg=sha256', '--block-size=4096', ...batch], { encoding: 'utf8', maxBuffer: 1 << 26 });
    for (const line of text.trim().split('\n')) {
      const m = /^sha256:([0-9a-f]{64}) (.*)$/.exec(line);
      if (m) out.set(m[2]!, m[1]!);
    }
  }
  return out;
}

const unzstd = (b: Buffer): Buffer => (b.length ? execFileSync('zstd', ['-d', '-c', '-q'], { input: b, maxBuffer: 1 << 30 }) : Buffer.alloc(0));

export interface ParsedSplitstream {
  magic: string;
  version: number;
  flags: number;
  algorithm: number;
  lgBlocksize: number;
  contentType: string;
  streamSize: bigint;
  streamRefs: string[];
  objectRefs: string[];
  /** Decompressed named refs section, records as written. */
  namedRecords: string[];
  chunks: Array<{ inline: Buffer } | { object: number }>;
}

/** Parse a splitstream file per composefs-rs doc/splitstream.md (current layout). */
export function parseSplitstreamIndependently(path: string): ParsedSplitstream {
  const f = readFileSync(path);
  const u64 = (o: number): number => Number(f.readBigUInt64LE(o));
  const section = (o: number): Buffer => f.subarray(u64(o), u64(o + 8));
  const infoStart = u64(16);
  const digests = (b: Buffer): string[] => Array.from({ length: b.length / 32 }, (_, i) => b.subarray(i * 32, i * 32 + 32).toString('hex'));
  const named = unzstd(section(infoStart + 48)).toString('utf8');
  const stream = unzstd(section(infoStart + 32));
  const chunks: ParsedSplitstream['chunks'] = [];
  for (let p = 0; p < stream.length; ) {
    const v = stream.readBigInt64LE(p);
    p += 8;
    if (v < 0n) {
      chunks.push({ inline: stream.subarray(p, p + Number(-v)) });
      p += Number(-v);
    } else chunks.push({ object: Number(v) });
  }
  return {
    magic: f.subarray(0, 11).toString('latin1'),
    version: f[11]!,
    flags: f.readUInt16LE(12),
    algorithm: f[14]!,
    lgBlocksize: f[15]!,
    contentType: f.subarray(infoStart + 64, infoStart + 72).toString('latin1'),
    streamSize: f.readBigUInt64LE(infoStart + 72),
    streamRefs: digests(section(infoStart)),
    objectRefs: digests(section(infoStart + 16)),
    namedRecords: named.split('\0').filter((s) => s !== ''),
    chunks,
  };
}

/** Reassemble a parsed splitstream from the object directory. */
export function reassemble(s: ParsedSplitstream, objectsDir: string): Buffer {
  return Buffer.concat(
    s.chunks.map((c) => ('inline' in c ? c.inline : readFileSync(join(objectsDir, s.objectRefs[c.object]!.slice(0, 2), s.objectRefs[c.object]!.slice(2))))),
  );
}

/** Undo composefs-info's dump escaping (`\xNN`, `\\`, `\n`, `\r`, `\t`) into raw bytes. */
export function unescapeDump(s: string): Buffer {
  const out: number[] = [];
  const b = Buffer.from(s, 'utf8');
  for (let i = 0; i < b.length; i++) {
    if (b[i] !== 0x5c) {
      out.push(b[i]!);
      continue;
    }
    const c = String.fromCharCode(b[++i]!);
    if (c === 'x') {
      out.push(parseInt(String.fromCharCode(b[i + 1]!, b[i + 2]!), 16));
      i += 2;
    } else out.push(c === 'n' ? 10 : c === 'r' ? 13 : c === 't' ? 9 : c.charCodeAt(0));
  }
  return Buffer.from(out);
}

export interface DumpEntry {
  path: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  payload: string;
  content: string;
  digest: string;
}

/** Parse `composefs-info dump` output (one entry per line; paths unescaped to UTF-8 strings). */
export function parseDump(text: string): Map<string, DumpEntry> {
  const m = new Map<string, DumpEntry>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const [path, size, mode, , uid, gid, , , payload, content, digest] = f;
    const p = unescapeDump(path!).toString('utf8');
    m.set(p, {
      path: p,
      size: Number(size),
      mode: parseInt(mode!.replace(/^@/, ''), 8),
      uid: Number(uid),
      gid: Number(gid),
      payload: payload === '-' ? '' : unescapeDump(payload!).toString('utf8'),
      content: content!,
      digest: digest === '-' ? '' : digest!,
    });
  }
  return m;
}

export interface LsEntry {
  path: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  target?: string;
}

/** Parse host `ostree ls -R --repo=R REV` output. */
export function ostreeLs(repo: string, rev: string): Map<string, LsEntry> {
  const text = execFileSync('ostree', ['ls', '-R', `--repo=${repo}`, rev], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const m = new Map<string, LsEntry>();
  for (const line of text.split('\n')) {
    const r = /^([-dl])(\d{5}) (\d+) (\d+)\s+(\d+) (.*)$/.exec(line);
    if (!r) continue;
    let path = r[6]!;
    let target: string | undefined;
    if (r[1] === 'l') {
      const k = path.indexOf(' -> ');
      target = path.slice(k + 4);
      path = path.slice(0, k);
    }
    m.set(path, { path, type: r[1]!, mode: parseInt(r[2]!, 8), uid: Number(r[3]), gid: Number(r[4]), size: Number(r[5]), ...(target !== undefined ? { target } : {}) });
  }
  return m;
}
