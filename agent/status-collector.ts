import os from 'node:os';
import type { DeviceSystem, Logger } from '../protocol/index.js';
import { boardName, cpuTemperature, interfaces, memAvailable, osName, rootDisk } from './status-probes.js';

/**
 * What the device status says about the machine (protocol DeviceSystemSchema). `refresh()` runs
 * every probe at once, each with its own timeout, and caches the answers; `snapshot()` is
 * synchronous and never waits, so a status publish never waits for a probe and a stream never
 * waits for either. A probe that fails or times out leaves its field null (a board without a
 * temperature sensor, a container without `/`); facts that do not change (OS, board) are probed
 * once successfully and kept. The probes (status-probes.ts) read /proc, /sys and /etc and never
 * start a process: a refresh costs about 2 ms of CPU.
 */

type Cache = Omit<DeviceSystem, 'uptimeSec' | 'agentUptimeSec' | 'loadAvg' | 'cpuCount' | 'memTotalBytes' | 'arch' | 'hostname'>;

const EMPTY: Cache = {
  os: null,
  kernel: null,
  board: null,
  cpuTempC: null,
  memAvailableBytes: null,
  diskTotalBytes: null,
  diskUsedBytes: null,
  interfaces: null,
};

export class StatusCollector {
  private readonly probeTimeoutMs: number;
  private readonly log: Logger;
  private readonly startedAt = Date.now();
  private cache: Cache = { ...EMPTY };
  private refreshing: Promise<void> | null = null;
  private readonly failed = new Set<string>();

  private readonly root: string;

  /** `root`: prefix of the probes' paths (tests only; default the real file system). */
  constructor(opts: { probeTimeoutMs: number; log: Logger; root?: string }) {
    this.probeTimeoutMs = opts.probeTimeoutMs;
    this.log = opts.log.child({ component: 'status' });
    this.root = opts.root ?? '';
  }

  /** Re-runs the probes (one refresh at a time; a second call joins the running one). */
  refresh(): Promise<void> {
    this.refreshing ??= this.probeAll().finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  /** The latest picture: live values from `os` plus the cached probe answers. */
  snapshot(): DeviceSystem {
    return {
      ...this.cache,
      arch: clip(os.arch(), 32),
      hostname: clip(os.hostname(), 253),
      uptimeSec: Math.round(os.uptime()),
      agentUptimeSec: Math.round((Date.now() - this.startedAt) / 1000),
      loadAvg: os.loadavg().map((n) => Math.round(n * 100) / 100),
      cpuCount: os.cpus().length || null,
      memTotalBytes: os.totalmem(),
    };
  }

  private async probeAll(): Promise<void> {
    const c = this.cache;
    const root = this.root;
    const [osText, board, temp, mem, disk, ifaces] = await Promise.all([
      c.os === null ? this.probe('os', () => osName(root)) : Promise.resolve(null),
      c.board === null ? this.probe('board', () => boardName(root)) : Promise.resolve(null),
      this.probe('cpuTemperature', () => cpuTemperature(root)),
      this.probe('memory', () => memAvailable(root)),
      this.probe('disk', rootDisk),
      this.probe('interfaces', () => interfaces(root)),
    ]);
    this.cache = {
      os: clip(osText, 128) ?? c.os,
      kernel: clip(os.release(), 128),
      board: clip(board, 128) ?? c.board,
      cpuTempC: temp,
      memAvailableBytes: typeof mem === 'number' && mem >= 0 ? mem : null,
      diskTotalBytes: disk?.total ?? null,
      diskUsedBytes: disk?.used ?? null,
      interfaces: ifaces,
    };
  }

  /** Runs one probe with the timeout; null on failure (logged once per probe, at debug after that). */
  private async probe<T>(name: string, fn: () => Promise<T | null>): Promise<T | null> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${this.probeTimeoutMs} ms`)), this.probeTimeoutMs);
        timer.unref();
      });
      const value = await Promise.race([fn(), timeout]);
      this.failed.delete(name);
      return value ?? null;
    } catch (err) {
      const level = this.failed.has(name) ? 'debug' : 'info';
      this.failed.add(name);
      this.log[level]({ probe: name, err: (err as Error).message }, 'status probe failed; its field stays empty');
      return null;
    } finally {
      clearTimeout(timer);
    }
  }
}

function clip(s: string | undefined | null, max: number): string | null {
  if (!s) return null;
  return s.length > max ? s.slice(0, max) : s;
}
