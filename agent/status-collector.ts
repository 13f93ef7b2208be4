import { readFile } from 'node:fs/promises';
import os from 'node:os';
import si from 'systeminformation';
import { LIMITS, type DeviceInterface, type DeviceSystem, type Logger } from '../protocol/index.js';

/**
 * What the device status says about the machine (protocol DeviceSystemSchema). `refresh()` runs
 * every probe at once, each with its own timeout, and caches the answers; `snapshot()` is
 * synchronous and never waits, so a status publish never waits for a probe and a stream never
 * waits for either. A probe that fails or times out leaves its field null (a board without a
 * temperature sensor, a container without `/`); facts that do not change (OS, board) are probed
 * once successfully and kept.
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

  constructor(opts: { probeTimeoutMs: number; log: Logger }) {
    this.probeTimeoutMs = opts.probeTimeoutMs;
    this.log = opts.log.child({ component: 'status' });
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
    const [osInfo, board, temp, mem, disk, ifaces] = await Promise.all([
      c.os === null ? this.probe('os', osProbe) : Promise.resolve(null),
      c.board === null ? this.probe('board', boardProbe) : Promise.resolve(null),
      this.probe('cpuTemperature', async () => {
        const t = await si.cpuTemperature();
        return typeof t.main === 'number' && Number.isFinite(t.main) && t.main > -100 && t.main < 250 ? Math.round(t.main * 10) / 10 : null;
      }),
      this.probe('memory', async () => (await si.mem()).available),
      this.probe('disk', diskProbe),
      this.probe('interfaces', interfacesProbe),
    ]);
    this.cache = {
      os: osInfo?.os ?? c.os,
      kernel: osInfo?.kernel ?? c.kernel,
      board: board ?? c.board,
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

async function osProbe(): Promise<{ os: string | null; kernel: string | null }> {
  const i = await si.osInfo();
  const name = [i.distro, i.release].filter((s) => s && s !== 'unknown').join(' ');
  return { os: clip(name || os.type(), 128), kernel: clip(i.kernel || os.release(), 128) };
}

/** The device tree's model on ARM boards (a Raspberry Pi says which one), else DMI's vendor and model. */
async function boardProbe(): Promise<string | null> {
  try {
    const model = (await readFile('/proc/device-tree/model', 'utf8')).replace(/\0/g, '').trim();
    if (model) return clip(model, 128);
  } catch {
    // not a device-tree board
  }
  const s = await si.system();
  const name = [s.manufacturer, s.model].filter((x) => x && !/^(unknown|default string|to be filled.*)$/i.test(x)).join(' ');
  return name ? clip(name, 128) : null;
}

async function diskProbe(): Promise<{ total: number; used: number } | null> {
  const root = (await si.fsSize()).find((f) => f.mount === '/');
  return root && root.size > 0 ? { total: root.size, used: root.used } : null;
}

/** Up to LIMITS.maxStatusInterfaces non-loopback interfaces that have an address, up ones first. */
async function interfacesProbe(): Promise<DeviceInterface[]> {
  const raw = await si.networkInterfaces();
  const list = (Array.isArray(raw) ? raw : [raw])
    .filter((i) => !i.internal && (i.ip4 || i.ip6))
    .sort((a, b) => Number(b.operstate === 'up') - Number(a.operstate === 'up'));
  return list.slice(0, LIMITS.maxStatusInterfaces).map((i) => ({
    name: clip(i.iface, 32) ?? 'unknown',
    mac: i.mac ? clip(i.mac, 32) : null,
    ipv4: i.ip4 ? [clip(i.ip4, 15)!] : [],
    ipv6: i.ip6 ? [clip(i.ip6.split('%')[0]!, 45)!] : [],
  }));
}

function clip(s: string | undefined | null, max: number): string | null {
  if (!s) return null;
  return s.length > max ? s.slice(0, max) : s;
}
