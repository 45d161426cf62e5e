/**
 * A fuzz worker in a child process: one request at a time, answered by id. A child that dies or
 * does not answer within the timeout (then killed) becomes a `{ dead }` / `{ hung }` result, and
 * the next request starts a fresh child — so a crash or a hang in the code under test is a finding,
 * never the end of the run.
 */
import { fork, type ChildProcess } from 'node:child_process';

export type WorkerOutcome<Reply> = Reply | { dead: string } | { hung: true };

export class ForkedWorker<Req extends object, Reply extends { id: number }> {
  private child: ChildProcess | null = null;
  private seq = 0;

  /** `script`: the worker module; it sends one message when ready, then answers `{ ...req, id }`. */
  constructor(
    private readonly script: string,
    private readonly name: string,
  ) {}

  private async start(): Promise<ChildProcess> {
    const child = fork(this.script, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'advanced' });
    child.stderr!.on('data', () => {});
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code, sig) => reject(new Error(`${this.name} did not start (${code ?? sig})`)));
    });
    this.child = child;
    return child;
  }

  async run(req: Req, timeoutMs: number): Promise<WorkerOutcome<Reply>> {
    const child = this.child ?? (await this.start());
    const id = ++this.seq;
    return new Promise((resolve) => {
      const done = (r: WorkerOutcome<Reply>): void => {
        clearTimeout(timer);
        child.off('message', onMsg);
        child.off('exit', onExit);
        resolve(r);
      };
      const onMsg = (m: Reply): void => {
        if (m.id === id) done(m);
      };
      const onExit = (code: number | null, sig: string | null): void => {
        this.child = null;
        done({ dead: `worker exited (${code ?? sig})` });
      };
      const timer = setTimeout(() => {
        child.off('exit', onExit);
        child.kill('SIGKILL');
        this.child = null;
        done({ hung: true });
      }, timeoutMs);
      child.on('message', onMsg);
      child.on('exit', onExit);
      child.send({ ...req, id });
    });
  }

  stop(): void {
    this.child?.kill('SIGKILL');
    this.child = null;
  }
}
