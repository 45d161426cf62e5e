/**
 * The one-command proof that signed content survived the trip through an OCI image:
 * encapsulate → (optionally through a transport such as docker://) → unencapsulate into a fresh
 * temporary repository → compare commit and commitmeta bytes → verify signatures and the
 * composefs digest there. Every step is reported, pass or fail, with what it found.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerTempPath } from '../cleanup.js';
import { encapsulate } from '../container/encapsulate.js';
import { unencapsulate } from '../container/unencapsulate.js';
import { commitComposefsDigest, COMPOSEFS_DIGEST_KEY_V0 } from '../composefs/from-commit.js';
import { Repo } from '../ostree/repo.js';
import { verifyCommit } from './commit.js';
import type { Check } from './report.js';

export interface RoundtripOptions {
  /** Trusted ed25519 public keys. */
  pubkeys?: Buffer[];
  /** GPG keyring directory / GnuPG home for GPG signatures. */
  gpgKeyDir?: string;
  /** Image reference to go through (default: a temporary oci-archive). */
  via?: string;
  tlsVerify?: boolean;
  compression?: 'gzip' | 'zstd';
  /** Keep the temporary repository and image (their paths are in the result). */
  keep?: boolean;
  onStep?: (step: RoundtripStep) => void;
}

export interface RoundtripStep extends Check {
  seconds: number;
}

export interface RoundtripResult {
  commit: string;
  image: string;
  manifestDigest?: string;
  steps: RoundtripStep[];
  ok: boolean;
  workDir?: string;
}

export async function roundtrip(repo: Repo, rev: string, opts: RoundtripOptions = {}): Promise<RoundtripResult> {
  const source = repo.loadCommit(rev);
  const sourceMeta = repo.readCommitMetaBytes(source.checksum);
  const work = mkdtempSync(join(tmpdir(), 'ostree-oci-roundtrip-'));
  const unregister = opts.keep ? () => {} : registerTempPath(work);
  const image = opts.via ?? `oci-archive:${join(work, 'image.ociarchive')}:roundtrip`;
  const steps: RoundtripStep[] = [];
  const hasDigest = source.commit.metadata.some(([k]) => k === COMPOSEFS_DIGEST_KEY_V0);
  const transport = opts.tlsVerify === false ? { tlsVerify: false } : {};
  let manifestDigest: string | undefined;
  let failed = false;

  const step = async (name: string, fn: () => Promise<Omit<Check, 'name'>>): Promise<void> => {
    const t0 = process.hrtime.bigint();
    let c: Omit<Check, 'name'>;
    if (failed) c = { status: 'absent', detail: 'skipped after an earlier failure' };
    else {
      try {
        c = await fn();
      } catch (e) {
        c = { status: 'fail', detail: (e as Error).message };
      }
    }
    if (c.status === 'fail') failed = true;
    const s: RoundtripStep = { name, ...c, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
    steps.push(s);
    opts.onStep?.(s);
  };

  let fresh: Repo | undefined;
  try {
    await step('source', async () => ({
      status: 'pass',
      detail: `commit ${source.checksum}, commitmeta ${sourceMeta ? `${sourceMeta.length} bytes` : 'absent'}`,
    }));
    await step('encapsulate', async () => {
      const r = await encapsulate(repo, source.checksum, image, { ...transport, ...(opts.compression ? { compression: opts.compression } : {}) });
      manifestDigest = r.manifestDigest;
      return { status: 'pass', detail: `${image} (${r.layers.length} layers, manifest ${r.manifestDigest})` };
    });
    await step('unencapsulate', async () => {
      fresh = Repo.create(join(work, 'repo'), 'bare-user');
      const r = await unencapsulate(fresh, image, { ...transport, verifyCommit: source.checksum, ref: 'roundtrip' });
      const st = r.stats;
      return {
        status: 'pass',
        detail: `into a fresh bare-user repo, re-checksummed: ${st.filesWritten} files, ${st.dirtree} dirtrees, ${st.dirmeta} dirmetas (${r.layers} layers)`,
      };
    });
    await step('commit-identical', async () => {
      const c = fresh!.loadCommit(source.checksum);
      const same = c.bytes.equals(source.bytes);
      return { status: same ? 'pass' : 'fail', detail: same ? `.commit bytes identical (${c.bytes.length} bytes)` : '.commit bytes differ' };
    });
    await step('commitmeta-identical', async () => {
      const got = fresh!.readCommitMetaBytes(source.checksum);
      if (!sourceMeta) return { status: got ? 'fail' : 'absent', detail: got ? 'commitmeta appeared from nowhere' : 'the source commit has no commitmeta' };
      if (!got) return { status: 'fail', detail: 'commitmeta was lost on the way', expected: `${sourceMeta.length} bytes`, got: 'none' };
      const same = got.equals(sourceMeta);
      return same
        ? { status: 'pass', detail: `commitmeta bytes identical (${got.length} bytes)` }
        : { status: 'fail', detail: 'commitmeta bytes differ', expected: `${sourceMeta.length} bytes`, got: `${got.length} bytes` };
    });
    await step('verify', async () => {
      const report = await verifyCommit(fresh!, source.checksum, {
        ...(opts.pubkeys ? { pubkeys: opts.pubkeys } : {}),
        ...(opts.gpgKeyDir ? { gpgKeyDir: opts.gpgKeyDir } : {}),
        composefs: Boolean(opts.pubkeys) && hasDigest,
        composefsDigest: commitComposefsDigest,
      });
      const summary = report.checks.map((c) => `${c.name} ${c.status}`).join(', ');
      const bad = report.checks.find((c) => c.status === 'fail' || (c.status === 'absent' && c.required));
      return report.outcome === 'failed'
        ? { status: 'fail', detail: `${bad?.name}: ${bad?.detail}`, ...(bad?.expected ? { expected: bad.expected } : {}), ...(bad?.got ? { got: bad.got } : {}) }
        : { status: report.outcome === 'verified' ? 'pass' : 'absent', detail: `in the fresh repo: ${summary}` };
    });
  } finally {
    fresh?.close();
    if (!opts.keep) rmSync(work, { recursive: true, force: true });
    unregister();
  }
  const ok = !steps.some((s) => s.status === 'fail') && steps.some((s) => s.name === 'verify' && s.status === 'pass');
  return { commit: source.checksum, image, ...(manifestDigest ? { manifestDigest } : {}), steps, ok, ...(opts.keep ? { workDir: work } : {}) };
}
