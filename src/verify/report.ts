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
  ok: boolean;
}

export function makeReport(target: string, checks: Check[]): VerifyReport {
  const ok = checks.length > 0 && checks.every((c) => c.status === 'pass' || (c.status === 'absent' && !c.required));
  return { target, checks, ok };
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
  lines.push(r.ok ? 'result: verified' : 'result: NOT verified');
  return `${lines.join('\n')}\n`;
}
