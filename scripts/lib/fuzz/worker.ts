/**
 * Fuzz worker: a child process that runs one import per message (unencapsulate or image pull) and
 * answers with the outcome. The parent restarts it when it dies or hangs, which is what the fuzzer
 * reports as a crash or a hang. Limits come in through OSTREE_OCI_LIMITS, set per request.
 */
import { unencapsulate } from '../../../src/container/index.js';
import { OstreeOciError } from '../../../src/errors.js';
import { LimitError, LIMITS_ENV } from '../../../src/limits.js';
import { Repo } from '../../../src/ostree/repo.js';
import { pullImage } from '../../../src/store/index.js';

export interface WorkRequest {
  id: number;
  op: 'unencapsulate' | 'pull' | 'init';
  repo: string;
  imgref?: string;
  ref?: string;
  limits?: string;
}

export interface WorkReply {
  id: number;
  ok: boolean;
  commit?: string;
  /** image pull: the ostree commit the image carried (baseCommit). */
  baseCommit?: string | null;
  commitmeta?: string | null;
  derived?: number;
  error?: { name: string; message: string; typed: boolean; cap?: string; stack?: string };
}

async function handle(m: WorkRequest): Promise<WorkReply> {
  if (m.limits) process.env[LIMITS_ENV] = m.limits;
  else delete process.env[LIMITS_ENV];
  if (m.op === 'init') {
    Repo.create(m.repo, 'bare-user').close();
    return { id: m.id, ok: true };
  }
  const repo = Repo.open(m.repo);
  try {
    if (m.op === 'unencapsulate') {
      const r = await unencapsulate(repo, m.imgref!, m.ref ? { ref: m.ref } : {});
      const meta = repo.readCommitMetaBytes(r.commit);
      return { id: m.id, ok: true, commit: r.commit, commitmeta: meta ? meta.toString('hex') : null };
    }
    const r = await pullImage(repo, m.imgref!);
    const base = r.baseCommit;
    const meta = base ? repo.readCommitMetaBytes(base) : null;
    return { id: m.id, ok: true, commit: r.commit, baseCommit: base, commitmeta: meta ? meta.toString('hex') : null, derived: r.derivedLayers };
  } finally {
    repo.close();
  }
}

process.on('message', (m: WorkRequest) => {
  handle(m).then(
    (r) => process.send!(r),
    (e: unknown) => {
      const err = e as Error;
      process.send!({
        id: m.id,
        ok: false,
        error: {
          name: err?.constructor?.name ?? typeof e,
          message: String(err?.message ?? e),
          typed: e instanceof OstreeOciError,
          ...(e instanceof LimitError ? { cap: e.cap } : {}),
          ...(e instanceof OstreeOciError ? {} : { stack: String(err?.stack ?? '') }),
        },
      } satisfies WorkReply);
    },
  );
});
process.send!({ id: 0, ok: true } satisfies WorkReply);
