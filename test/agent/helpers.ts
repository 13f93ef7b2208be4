import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ControlChannel } from '../../agent/control-channel.js';
import { hubTlsContext } from '../../agent/hub-tls.js';
import { createLogger, type Logger } from '../../protocol/index.js';

export type LogLine = Record<string, unknown> & { msg?: string; level: number };

/** A debug-level logger whose lines the test can read and wait for. */
export function captureLog(): { log: Logger; lines: LogLine[]; text: () => string; waitFor: (pred: (l: LogLine) => boolean) => Promise<LogLine> } {
  const lines: LogLine[] = [];
  const raw: string[] = [];
  const listeners = new Set<() => void>();
  const log = createLogger({
    name: 'agent-test',
    level: 'debug',
    destination: {
      write(s: string) {
        raw.push(s);
        lines.push(JSON.parse(s) as LogLine);
        for (const l of [...listeners]) l();
      },
    },
  });
  const waitFor = (pred: (l: LogLine) => boolean): Promise<LogLine> =>
    new Promise((resolve) => {
      const check = (): void => {
        const hit = lines.find(pred);
        if (hit) {
          listeners.delete(check);
          resolve(hit);
        }
      };
      listeners.add(check);
      check();
    });
  return { log, lines, text: () => raw.join(''), waitFor };
}

/** Reads a duplex as text: wait for some text to have arrived, or for the end. */
export function collect(d: Duplex): { text: () => string; until: (s: string) => Promise<void>; ended: Promise<string> } {
  let text = '';
  const listeners = new Set<() => void>();
  d.on('data', (c: Buffer) => {
    text += c.toString();
    for (const l of [...listeners]) l();
  });
  const ended = new Promise<string>((resolve, reject) => {
    d.once('end', () => resolve(text));
    d.once('error', reject);
  });
  ended.catch(() => {});
  const until = (s: string): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (text.includes(s)) {
          listeners.delete(check);
          resolve();
        }
      };
      listeners.add(check);
      check();
    });
  return { text: () => text, until, ended };
}

/**
 * A local TCP service for the agent to reach: greets with "hello\n", echoes, and half-closes after
 * the client does. Counts the connections it accepted.
 */
export class TargetServer {
  connections = 0;
  readonly sockets = new Set<Socket>();
  private server!: Server;
  private readonly closedListeners = new Set<() => void>();
  port = 0;

  async start(): Promise<void> {
    this.server = createServer({ allowHalfOpen: true }, (s) => {
      this.connections++;
      this.sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        this.sockets.delete(s);
        for (const l of [...this.closedListeners]) l();
      });
      s.write('hello\n');
      s.pipe(s);
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Resolves when no connection is open. */
  idle(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.sockets.size === 0) {
          this.closedListeners.delete(check);
          resolve();
        }
      };
      this.closedListeners.add(check);
      check();
    });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export { closedPort } from '../helpers/targets.js';

/**
 * A ControlChannel for tests, logging into memory and added to `running` (each file stops those in
 * its afterAll); `ca` undefined: Node's default trust.
 */
export function testChannel(
  running: ControlChannel[],
  opts: { url: string; deviceId: string; key: string; ca?: string | undefined; auth?: 'token' | 'key'; reconnect?: { initialDelayMs: number; maxDelayMs: number } },
): { ch: ControlChannel; logs: ReturnType<typeof captureLog> } {
  const logs = captureLog();
  const ch = new ControlChannel({
    url: opts.url,
    deviceId: opts.deviceId,
    key: opts.key,
    ...(opts.auth ? { auth: opts.auth } : {}),
    secureContext: hubTlsContext({ ca: opts.ca }),
    log: logs.log,
    onRequest: () => {},
    openStreams: () => 0,
    reconnect: opts.reconnect ?? { initialDelayMs: 100, maxDelayMs: 100 },
  });
  running.push(ch);
  return { ch, logs };
}
