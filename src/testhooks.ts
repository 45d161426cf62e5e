/**
 * Test hook for crash-safety tests (README "Limits" → "Crash safety"; test/crash.test.ts):
 * with `OSTREE_OCI_CRASH_AFTER=N` in the environment, the process kills itself with SIGKILL at the
 * N-th crash point it reaches. The importers call `crashPoint()` after each object they import
 * (unencapsulate, image pull) or store (migrate), and at the steps that publish their result, so
 * a test can stop them deterministically anywhere. Without the variable this does nothing.
 *
 * This is the one place library code ends the process, and only when asked to by that variable.
 */
const spec = process.env['OSTREE_OCI_CRASH_AFTER'];
let remaining = spec !== undefined && /^\d+$/.test(spec) ? Number(spec) : -1;

/** Count one crash point; SIGKILL this process when OSTREE_OCI_CRASH_AFTER of them were reached. */
export function crashPoint(): void {
  if (remaining < 0) return;
  if (--remaining <= 0) process.kill(process.pid, 'SIGKILL');
}
