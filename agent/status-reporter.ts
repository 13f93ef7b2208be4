import type { DeviceLastError, DeviceStatusMessage, Logger } from '../protocol/index.js';
import type { StatusCollector } from './status-collector.js';

/**
 * Keeps the device status fresh: refreshes the collector when started and every `intervalMs`,
 * remembers the agent's last error, and asks for a publish (`publish`, throttled by the control
 * channel) whenever either changed. The control channel reads `fields()` when it publishes.
 */
export class StatusReporter {
  private readonly collector: StatusCollector;
  private readonly intervalMs: number;
  private readonly publish: () => void;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;
  private lastError: DeviceLastError | null = null;

  constructor(opts: { collector: StatusCollector; intervalMs: number; publish: () => void; log: Logger }) {
    this.collector = opts.collector;
    this.intervalMs = opts.intervalMs;
    this.publish = opts.publish;
    this.log = opts.log;
  }

  async start(): Promise<void> {
    if (this.timer) return;
    this.timer = setInterval(() => this.refreshAndPublish(), this.intervalMs);
    this.timer.unref();
    this.refreshAndPublish(); // not awaited: the agent connects while the probes run
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The status fields this component owns. */
  fields(): Pick<DeviceStatusMessage, 'system' | 'lastError'> {
    return { system: this.collector.snapshot(), lastError: this.lastError };
  }

  /** Remembers the agent's latest error for the status (code: a short machine-readable word). */
  recordError(code: string, message: string): void {
    this.lastError = { at: Date.now(), code: code.slice(0, 64), message: message.slice(0, 300) };
    this.publish();
  }

  private refreshAndPublish(): void {
    this.collector.refresh().then(
      () => this.timer && this.publish(),
      (err: Error) => this.log.warn({ err: err.message }, 'status refresh failed'),
    );
  }
}
