/**
 * The result of `verify`: a list of named checks, each pass / fail / absent, with what was
 * expected and found. The CLI prints it as a table or JSON; the exit code is non-zero when any
 * check failed (or a required one is absent).
 */
export type CheckStatus = 'pass' | 'fail' | 'absent';

export interface Check {
  /** Short stable name, e.g. "ed25519-signature", "composefs-digest". */
  name: string;
  status: CheckStatus;
  /** One line for people: what was checked and what was found. */
  detail: string;
  expected?: string;
  got?: string;
  /** When true, `absent` counts as a failure. */
  required?: boolean;
}

export interface VerifyReport {
  target: string;
  checks: Check[];
  /** Nothing failed and at least one check passed. */
  ok: boolean;
  /** verified: ok · failed: a check failed or a required one is missing · absent: nothing to check. */
  outcome: 'verified' | 'failed' | 'absent';
}

/** Exit codes of `verify`: 0 verified, 1 failed, 3 nothing there to verify. */
export const VERIFY_EXIT = { verified: 0, failed: 1, absent: 3 } as const;

export function makeReport(target: string, checks: Check[]): VerifyReport {
  const failed = checks.some((c) => c.status === 'fail' || (c.status === 'absent' && c.required));
  const passed = checks.some((c) => c.status === 'pass');
  const outcome = failed ? 'failed' : passed ? 'verified' : 'absent';
  return { target, checks, ok: outcome === 'verified', outcome };
}

export function formatReport(r: VerifyReport): string {
  const w = Math.max(...r.checks.map((c) => c.name.length), 5);
  const lines = [`verify ${r.target}`];
  for (const c of r.checks) {
    const status = c.status === 'pass' ? 'ok' : c.status === 'fail' ? 'FAILED' : c.required ? 'MISSING' : 'absent';
    lines.push(`  ${c.name.padEnd(w)}  ${status.padEnd(7)} ${c.detail}`);
    if (c.status === 'fail' && (c.expected || c.got)) {
      lines.push(`  ${''.padEnd(w)}           expected ${c.expected ?? '-'}`);
      lines.push(`  ${''.padEnd(w)}           got      ${c.got ?? '-'}`);
    }
  }
  lines.push(r.outcome === 'verified' ? 'result: verified' : r.outcome === 'absent' ? 'result: nothing to verify (absent)' : 'result: NOT verified');
  return `${lines.join('\n')}\n`;
}
