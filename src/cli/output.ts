/** Shared CLI rendering helpers: errors, JSON, progress on a TTY. */
import { statSync } from 'node:fs';
import { OstreeOciError, UsageError } from '../errors.js';

export function renderError(err: unknown, verbose: boolean): number {
  if (err instanceof OstreeOciError) {
    process.stderr.write(`error: ${err.message}\n`);
    if (verbose && err.details) process.stderr.write(`${JSON.stringify(err.details, null, 2)}\n`);
    return err.exitCode;
  }
  const e = err as { message?: string; stack?: string; code?: string };
  process.stderr.write(`error: ${e?.message ?? String(err)}\n`);
  if (verbose && e?.stack) process.stderr.write(`${e.stack}\n`);
  return 1;
}

/** Print a value as pretty JSON on stdout; bigints become decimal strings. */
export function printJson(value: unknown): void {
  process.stdout.write(
    `${JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`,
  );
}

/** A progress reporter that writes to stderr only when stderr is a TTY. */
export function progress(label: string): (msg: string) => void {
  if (!process.stderr.isTTY) return () => {};
  let last = 0;
  return (msg: string) => {
    const now = Date.now();
    if (now - last < 100) return;
    last = now;
    process.stderr.write(`\r\x1b[K${label}: ${msg}`);
  };
}

export function endProgress(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}

/** A directory named by an option must exist (a missing GnuPG home silently verified nothing). */
export function checkDirectoryOption(path: string, flag: string): void {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) throw new UsageError(`${flag} ${path}: no such directory`);
  if (!st.isDirectory()) throw new UsageError(`${flag} ${path}: not a directory`);
}
