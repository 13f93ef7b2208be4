import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = `${ROOT}dist/devstreams.mjs`;

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `devstreams ARGS` to completion (bounded), capturing its output. */
export async function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: Buffer | string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => err.push(d));
  child.stdin.on('error', () => {});
  child.stdin.end(opts.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

/** A long-running devstreams process (hub, agent, forward) whose output lines can be awaited. */
export class CliProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  private waiters: Array<{ pred: (line: string) => boolean; resolve: (line: string) => void }> = [];
  readonly exited: Promise<number | null>;

  /** `command`: what runs `devstreams` (default this checkout's dist build; test/packaging passes an executable). */
  constructor(args: string[], env: NodeJS.ProcessEnv = {}, command: readonly string[] = [process.execPath, CLI]) {
    const [cmd, ...pre] = command;
    this.child = spawn(cmd!, [...pre, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const s of [this.child.stdout!, this.child.stderr!]) {
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          this.onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    }
    this.exited = once(this.child, 'exit').then(([code]) => code as number | null);
  }

  private onLine(line: string): void {
    this.lines.push(line);
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred(line)) return true;
      w.resolve(line);
      return false;
    });
  }

  /** Resolves with the first line (past or future) that satisfies `pred`; rejects on exit or timeout. */
  waitForLine(pred: (line: string) => boolean, timeoutMs = 15_000): Promise<string> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for a line; output so far:\n${this.lines.join('\n')}`)), timeoutMs);
      const w = { pred, resolve: (l: string) => (clearTimeout(timer), resolve(l)) };
      this.waiters.push(w);
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`process exited (${code}) before the line came; output:\n${this.lines.join('\n')}`));
      });
    });
  }

  /** Waits for a JSON log line whose `msg` is `msg` (and whose fields match `fields`). */
  async waitForLog(msg: string, fields: Record<string, unknown> = {}, timeoutMs?: number): Promise<Record<string, unknown>> {
    const line = await this.waitForLine((l) => {
      const j = parseJson(l);
      return !!j && j.msg === msg && Object.entries(fields).every(([k, v]) => j[k] === v);
    }, timeoutMs);
    return parseJson(line)!;
  }

  logs(msg: string): Array<Record<string, unknown>> {
    return this.lines.map(parseJson).filter((j): j is Record<string, unknown> => !!j && j.msg === msg);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

function parseJson(line: string): Record<string, unknown> | null {
  if (!line.startsWith('{')) return null;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export { freePort } from './ports.js';
