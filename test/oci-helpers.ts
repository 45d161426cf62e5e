/** Shared helpers for the test/oci-*.test.ts files (real tools, no mocks). */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';

export type TarSpec =
  | { name: string; type: 'file'; content: string | Buffer; mode?: number }
  | { name: string; type: 'dir'; mode?: number }
  | { name: string; type: 'symlink'; target: string };

/** An uncompressed tar (tar-stream, ustar, mtime 0) of the given entries. */
export async function makeTar(entries: TarSpec[]): Promise<Buffer> {
  const pack = tar.pack();
  const out: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack as AsyncIterable<Buffer>) out.push(c);
  })();
  for (const e of entries) {
    const base = { name: e.name, mtime: new Date(0), uid: 0, gid: 0 };
    if (e.type === 'file') pack.entry({ ...base, mode: e.mode ?? 0o644 }, Buffer.isBuffer(e.content) ? e.content : Buffer.from(e.content));
    else if (e.type === 'dir') pack.entry({ ...base, type: 'directory', mode: e.mode ?? 0o755 });
    else pack.entry({ ...base, type: 'symlink', linkname: e.target, mode: 0o777 });
  }
  pack.finalize();
  await done;
  return Buffer.concat(out);
}

/** A Readable yielding `buf` in chunks of `chunk` bytes. */
export function streamOf(buf: Buffer, chunk = 64 * 1024): Readable {
  let off = 0;
  return new Readable({
    read() {
      if (off >= buf.length) {
        this.push(null);
        return;
      }
      this.push(buf.subarray(off, off + chunk));
      off += chunk;
    },
  });
}

export async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A temp dir removed at the end of the test. */
export async function tempDir(t: { teardown(fn: () => unknown): void }, prefix = 'oci-test-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** Run a command; resolves stdout, rejects with stderr in the message. */
export function run(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 << 20, ...opts }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Start /usr/bin/docker-registry on a free loopback port with tmp storage; stopped at teardown. */
export async function startRegistry(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await tempDir(t, 'oci-registry-');
  const port = await freePort();
  const cfg = join(dir, 'config.yml');
  await writeFile(
    cfg,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/bin/docker-registry', ['serve', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += String(d)));
  t.teardown(
    () =>
      new Promise<void>((res) => {
        if (child.exitCode !== null) return res();
        child.once('exit', () => res());
        child.kill('SIGTERM');
      }),
  );
  const host = `127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
    try {
      const r = await fetch(`http://${host}/v2/`);
      if (r.status === 200) return host;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`docker-registry did not come up on ${host}: ${stderr}`);
}

/** Deterministic pseudo-random bytes (xorshift32), half of each 4 KiB block zeroed for compressibility. */
export function pseudoRandom(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= n; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    if ((i & 4095) < 2048) b.writeUInt32LE(x, i);
  }
  return b;
}
