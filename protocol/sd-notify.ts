import { getSystemErrorName } from 'node:util';
import type { Logger } from './logger.js';
import { loadMallocTrim, type SdNotifySend } from './malloc-trim.js';

/**
 * systemd's service notification protocol (sd_notify(3)). Node cannot send on an AF_UNIX datagram
 * socket, so each message goes through devstreams' native helper (native/malloc-trim.c `notify`,
 * loaded at the first message), from this process itself: systemd attributes it to the unit's main
 * PID. Where the helper cannot be loaded (protocol/malloc-trim.ts says where), each message is
 * handed to `systemd-notify` instead, which the unit allows with NotifyAccess=all; systemd-notify
 * waits (barrier) until systemd has taken the message, so it is still alive when systemd attributes
 * it to the unit. READY=1 is repeated with every later message either way (systemd ignores a
 * repeat), so one lost to a race is delivered with the next. Messages are sent one at a time; what
 * comes in meanwhile is merged into the next one.
 *
 * Without NOTIFY_SOCKET everything is a no-op. With the helper, neither child_process nor perf_hooks
 * is loaded (the clock is process.hrtime): an agent under systemd carries neither (docs/OPERATIONS.md
 * "Agent footprint").
 */

/** systemd's interface variables, read once by a CLI from its environment. */
export interface SystemdNotifyEnv {
  /** NOTIFY_SOCKET: where systemd listens; unset when not run by systemd as Type=notify. */
  notifySocket?: string | undefined;
  /** WATCHDOG_USEC: the unit's WatchdogSec= in microseconds; unset without a watchdog. */
  watchdogUsec?: string | undefined;
  /** WATCHDOG_PID: the process the watchdog is meant for (ours unless a parent forked us). */
  watchdogPid?: string | undefined;
}

export function systemdNotifyEnv(env: NodeJS.ProcessEnv): SystemdNotifyEnv {
  return { notifySocket: env.NOTIFY_SOCKET, watchdogUsec: env.WATCHDOG_USEC, watchdogPid: env.WATCHDOG_PID };
}

export interface SdNotifierOptions {
  env: SystemdNotifyEnv;
  log: Logger;
  /** The one-line state for STATUS=; polled, and sent when it changes. */
  status: () => string;
  /** How often the event loop's delay is measured and the status polled (default: 1 s, or a
   *  quarter of the ping interval if that is shorter). */
  checkIntervalMs?: number;
  /** The event-loop delay above which a watchdog ping is withheld (default: half the ping interval). */
  maxLoopDelayMs?: number;
  /**
   * How a message is sent (default: the native helper's notify, loaded at the first message); null,
   * or a helper that cannot be loaded: `command`.
   */
  send?: SdNotifySend | null;
  /** The program that sends without the helper (default `systemd-notify`, found on PATH). */
  command?: string;
}

/** A monotonic clock in ms: process.hrtime, since the global `performance` loads all of perf_hooks. */
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

type Fields = Record<string, string>;

const STOP_WAIT_MS = 2000;

export class SdNotifier {
  private readonly socket: string | undefined;
  private readonly log: Logger;
  private readonly status: () => string;
  private readonly command: string;
  /** The native sender: undefined until the first message decides, null for `command`. */
  private sender: SdNotifySend | null | undefined;
  /** The watchdog ping interval (half of WATCHDOG_USEC), or 0 without a watchdog. */
  readonly pingIntervalMs: number;
  private readonly checkMs: number;
  private readonly maxDelayMs: number;
  private timer: NodeJS.Timeout | undefined;
  private lastCheck = 0;
  private maxLag = 0;
  private nextPing = 0;
  private lastStatus = '';
  private isReady = false;
  private isStopping = false;
  private pending: Fields = {};
  private inFlight: Promise<void> | undefined;
  private warned = false;

  constructor(opts: SdNotifierOptions) {
    this.socket = opts.env.notifySocket || undefined;
    this.log = opts.log.child({ component: 'sd-notify' });
    this.status = opts.status;
    this.command = opts.command ?? 'systemd-notify';
    this.sender = opts.send;
    const usec = Number(opts.env.watchdogUsec);
    const forUs = !opts.env.watchdogPid || Number(opts.env.watchdogPid) === process.pid;
    this.pingIntervalMs = this.socket && forUs && Number.isFinite(usec) && usec > 0 ? usec / 2000 : 0;
    this.checkMs = opts.checkIntervalMs ?? (this.pingIntervalMs > 0 ? Math.min(this.pingIntervalMs / 4, 1000) : 1000);
    this.maxDelayMs = opts.maxLoopDelayMs ?? (this.pingIntervalMs > 0 ? this.pingIntervalMs / 2 : Infinity);
  }

  /** True when run by systemd with a notify socket. */
  get enabled(): boolean {
    return this.socket !== undefined;
  }

  /** READY=1 with the current status; starts the watchdog pings and status updates. Idempotent. */
  ready(): void {
    if (!this.socket || this.isReady || this.isStopping) return;
    this.isReady = true;
    this.lastStatus = this.status();
    this.send({ STATUS: this.lastStatus, ...(this.pingIntervalMs > 0 ? { WATCHDOG: '1' } : {}) });
    this.lastCheck = nowMs();
    this.nextPing = this.lastCheck + this.pingIntervalMs;
    this.schedule();
    this.log.debug({ watchdogIntervalMs: this.pingIntervalMs }, 'notified systemd: ready');
  }

  /** STOPPING=1; ends the pings. Resolves once sent (bounded), so a caller may exit after it. */
  async stopping(): Promise<void> {
    if (!this.socket || this.isStopping) return;
    this.isStopping = true;
    this.clearTimer();
    this.send({ STOPPING: '1', STATUS: 'stopping' });
    await this.settled(STOP_WAIT_MS);
  }

  /** Stops the timers (no message); idempotent. */
  stop(): void {
    this.isStopping = true;
    this.clearTimer();
  }

  /** Resolves when no message is being sent (or after `timeoutMs`). */
  async settled(timeoutMs = STOP_WAIT_MS): Promise<void> {
    const deadline = nowMs() + timeoutMs;
    while (this.inFlight && nowMs() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.inFlight, new Promise((r) => (timer = setTimeout(r, deadline - nowMs())))]);
      clearTimeout(timer);
    }
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.check(), this.checkMs);
    this.timer.unref();
  }

  private clearTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One tick: measure how late it came (event-loop delay), refresh STATUS, ping when due. */
  private check(): void {
    const now = nowMs();
    this.maxLag = Math.max(this.maxLag, now - this.lastCheck - this.checkMs);
    this.lastCheck = now;
    const status = this.status();
    const fields: Fields = status !== this.lastStatus ? { STATUS: status } : {};
    this.lastStatus = status;
    if (this.pingIntervalMs > 0 && now >= this.nextPing) {
      // Ping only if no check since the last ping came late by more than maxDelayMs; if one did,
      // the next check tries again, so pings resume as soon as the loop keeps time again and
      // systemd acts only on a loop that stays unhealthy (or blocked) for about WatchdogSec.
      const lag = this.maxLag;
      this.maxLag = 0;
      if (lag <= this.maxDelayMs) {
        fields.WATCHDOG = '1';
        this.nextPing = now + this.pingIntervalMs;
      } else {
        this.log.warn({ loopDelayMs: Math.round(lag), maxLoopDelayMs: this.maxDelayMs }, 'event loop was blocked: watchdog ping withheld');
      }
    }
    if (Object.keys(fields).length > 0) this.send(fields);
    this.schedule();
  }

  private send(fields: Fields): void {
    if (!this.socket) return;
    Object.assign(this.pending, fields);
    if (!this.inFlight) this.inFlight = this.flush();
  }

  /** Sends what is pending, one message at a time, until nothing is. */
  private async flush(): Promise<void> {
    // First a turn of the microtask queue: send() stores this promise as inFlight before the loop
    // runs (with the native helper nothing below waits, and the loop would clear inFlight before
    // it was set), and what is sent in the same turn goes in one message.
    await undefined;
    while (Object.keys(this.pending).length > 0) {
      const fields: Fields = { ...(this.isReady ? { READY: '1' } : {}), ...this.pending };
      this.pending = {};
      const args = Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`);
      const problem = this.nativeSender() ? this.sendNative(args.join('\n')) : await this.run(args);
      if (problem && !this.warned) {
        this.warned = true; // once: a host without systemd-notify would otherwise log every tick
        this.log.warn({ problem }, 'cannot notify systemd');
      }
    }
    this.inFlight = undefined;
  }

  /** The helper's notify, looked up once (at the first message); null when it cannot be had. */
  private nativeSender(): SdNotifySend | null {
    if (this.sender === undefined) {
      const load = loadMallocTrim();
      this.sender = load.notify;
      if (!load.notify) this.log.info({ reason: load.reason, command: this.command }, 'systemd notifications through a helper program (native helper unavailable)');
    }
    return this.sender;
  }

  /** One datagram from this process; a problem description, or '' on success. */
  private sendNative(message: string): string {
    const errno = this.sender!(this.socket!, message);
    return errno === 0 ? '' : `sd_notify to ${this.socket}: ${errno > 0 ? getSystemErrorName(-errno) : errno}`;
  }

  /** Runs the command; resolves with a problem description, or '' on success. */
  private run(args: string[]): Promise<string> {
    return new Promise((resolve) => {
      let stderr = '';
      const { spawn } = process.getBuiltinModule('node:child_process');
      const child = spawn(this.command, args, {
        env: { ...process.env, NOTIFY_SOCKET: this.socket },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', (err: NodeJS.ErrnoException) => resolve(`${this.command}: ${err.code ?? err.message}`));
      child.on('close', (code) => resolve(code === 0 ? '' : `${this.command} exited ${code}: ${stderr.split('\n')[0] ?? ''}`));
    });
  }
}
