/**
 * What an interrupted process must undo: temporary files and directories, half-written outputs,
 * child processes writing into them.
 *
 * A signal that ends the process runs no `finally` block and no `abort()`, so code that creates
 * such things registers an undo action while its work is under way and unregisters it when the
 * work ends, whichever way (the normal paths clean up by themselves). The actions run only from
 * runInterruptCleanup(): the CLI calls it from its SIGINT/SIGTERM/SIGHUP handlers
 * (installSignalCleanup). Library code never installs signal handlers — that is the host's call;
 * a host that wants the same behaviour calls runInterruptCleanup() from its own handler.
 *
 * Actions are synchronous (a signal handler must finish its work before the process exits, with
 * no other JavaScript running in between) and run newest first, so a temp file inside a
 * directory goes before the directory and a child process is stopped before what it writes to
 * is removed.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { constants } from 'node:os';

const actions = new Set<() => void>();
/** For short synchronous sleeps (Atomics.wait) while waiting on other threads and processes. */
const pause = new Int32Array(new SharedArrayBuffer(4));

/** Register `undo` (synchronous). Returns the function that unregisters it. */
export function onInterrupt(undo: () => void): () => void {
  const entry = (): void => undo(); // its own identity: the same function may be registered twice
  actions.add(entry);
  return () => {
    actions.delete(entry);
  };
}

/**
 * Remove a file or directory tree; nothing when it does not exist. A directory that other threads
 * still write into (libostree writes in flight on libuv threads when a signal arrives) can refill
 * between the removal of its entries and its own (ENOTEMPTY): it is removed again until it is gone.
 * No new write can start meanwhile (this runs synchronously on the only thread that starts them),
 * so it ends once the writes in flight have; the 10 s bound only keeps a stuck one from hanging.
 */
export function removePathSync(path: string): void {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      rmSync(path, { recursive: true, force: true });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOTEMPTY' || Date.now() > deadline) throw e;
      Atomics.wait(pause, 0, 0, 5);
    }
  }
}

/** A temporary file or directory an interruption must remove. Returns the unregister function. */
export function registerTempPath(path: string): () => void {
  return onInterrupt(() => removePathSync(path));
}

/** /proc state letter of a process, undefined when it is gone (or there is no /proc). */
function procState(pid: number): string | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.charAt(s.lastIndexOf(')') + 2);
  } catch {
    return undefined;
  }
}


/**
 * Send `signal` to a child and wait (at most `ms`) until it has exited. The child is not reaped
 * while this runs (libuv reaps from the event loop), so "exited" is its zombie state.
 */
function stopChild(child: ChildProcess, signal: NodeJS.Signals, ms: number): boolean {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return true;
  try {
    process.kill(pid, signal);
  } catch {
    return true; // already gone
  }
  for (const end = Date.now() + ms; Date.now() < end; ) {
    const st = procState(pid);
    if (st === undefined || st === 'Z' || st === 'X') return true;
    Atomics.wait(pause, 0, 0, 5);
  }
  return false;
}

/**
 * A child process an interruption must stop (SIGTERM, then SIGKILL after 2 s) before the
 * temporaries it writes to are removed: a terminal's Ctrl-C reaches it too, a `kill PID` does not.
 */
export function registerChild(child: ChildProcess): () => void {
  return onInterrupt(() => {
    if (!stopChild(child, 'SIGTERM', 2000)) stopChild(child, 'SIGKILL', 1000);
  });
}

/** Run every registered action, newest first, and forget them; an action that fails does not stop the others. */
export function runInterruptCleanup(): void {
  const all = [...actions].reverse();
  actions.clear();
  for (const undo of all) {
    try {
      undo();
    } catch {
      /* remove as much as possible */
    }
  }
}

/** Number of registered actions (for tests: every normal path must unregister what it registered). */
export function pendingInterruptCleanups(): number {
  return actions.size;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let installed = false;

/**
 * CLI only: on SIGINT, SIGTERM or SIGHUP run the registered actions, then exit with 128 + the
 * signal number (130, 143, 129), as a shell reports a process killed by that signal.
 */
export function installSignalCleanup(): void {
  if (installed) return;
  installed = true;
  for (const sig of SIGNALS) {
    process.on(sig, () => {
      runInterruptCleanup();
      process.stderr.write(`error: interrupted by ${sig}\n`);
      process.exit(128 + constants.signals[sig]);
    });
  }
}
