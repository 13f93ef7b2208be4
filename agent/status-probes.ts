import { existsSync, readFile as readFileCb, readdir as readdirCb, statfs as statfsCb } from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';
import { LIMITS, type DeviceInterface } from '../protocol/index.js';

// The callback API, promisified: node:fs/promises loads readline and the REPL's history with it,
// which an idle agent would carry for nothing (docs/OPERATIONS.md "Agent footprint").
const readFile = promisify(readFileCb);
const readdir = promisify(readdirCb);
const statfs = promisify(statfsCb);

/**
 * The device-status probes (status-collector.ts runs them): each reads a few files under /proc,
 * /sys or /etc, or asks the `os` module, and never starts a process. `root` prefixes every path
 * (default: the real file system; tests point it at a tree of their own for hardware this machine
 * lacks). A probe returns null for what the machine does not have (or cannot be read); a probe that
 * throws (no /proc/meminfo, statfs failing) leaves its field null too (the collector catches it).
 */

/** NAME and VERSION_ID of os-release(5), e.g. "Debian GNU/Linux 12"; os.type() where there is none. */
export async function osName(root = ''): Promise<string> {
  for (const file of ['/etc/os-release', '/usr/lib/os-release']) {
    const text = await readOptional(root + file);
    if (text === null) continue;
    const v = parseOsRelease(text);
    const name = [v.NAME, v.VERSION_ID].filter(Boolean).join(' ');
    if (name) return name;
  }
  return os.type();
}

/** os-release(5) assignments, quotes and escapes removed. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2]!.trim();
    if (/^(["']).*\1$/.test(v)) v = v.slice(1, -1).replace(/\\(["'$`\\])/g, '$1');
    out[m[1]!] = v;
  }
  return out;
}

const JUNK = /^(unknown|default string|to be filled.*|system product name|system manufacturer|none|n\/a|0+)$/i;

/**
 * The board: the device tree's model on ARM boards (a Raspberry Pi says which one), else DMI's
 * vendor and product (x86), else "Microsoft WSL" or "Docker Container" where that is what it is.
 */
export async function boardName(root = ''): Promise<string | null> {
  const model = (await readOptional(`${root}/proc/device-tree/model`))?.replace(/\0/g, '').trim();
  if (model) return model;
  if (existsSync(`${root}/.dockerenv`)) return 'Docker Container';
  if (/microsoft|wsl2$/i.test(os.release())) return 'Microsoft WSL';
  const dmi = `${root}/sys/devices/virtual/dmi/id`;
  const parts = await Promise.all(['sys_vendor', 'product_name'].map(async (f) => (await readOptional(`${dmi}/${f}`))?.trim() ?? ''));
  return parts.filter((p) => p && !JUNK.test(p)).join(' ') || null;
}

/** MemAvailable from /proc/meminfo in bytes (os.freemem() on kernels that do not report it). */
export async function memAvailable(root = ''): Promise<number> {
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(await readFile(`${root}/proc/meminfo`, 'utf8'));
  return m ? Number(m[1]) * 1024 : os.freemem();
}

/** Size and use of the file system on `/`, as `df` counts them (used = blocks - free blocks). */
export async function rootDisk(): Promise<{ total: number; used: number } | null> {
  const s = await statfs('/');
  const total = s.blocks * s.bsize;
  return total > 0 ? { total, used: (s.blocks - s.bfree) * s.bsize } : null;
}

/**
 * The main CPU temperature in degrees Celsius, one decimal: hwmon's AMD Tdie/Tctl, else its Intel
 * "Package id"/"Physical id", else the mean of its "Core N" sensors; else the first thermal zone
 * whose type names the CPU or SoC (cpu-thermal on a Raspberry Pi, x86_pkg_temp), else zone 0.
 * Null where there is no sensor (most VMs and containers).
 */
export async function cpuTemperature(root = ''): Promise<number | null> {
  const labelled = new Map<string, number>();
  const cores: number[] = [];
  const hwmon = `${root}/sys/class/hwmon`;
  for (const mon of await listOptional(hwmon)) {
    for (const f of await listOptional(`${hwmon}/${mon}`)) {
      const m = /^(temp\d+)_label$/.exec(f);
      if (!m) continue;
      const label = (await readOptional(`${hwmon}/${mon}/${f}`))?.trim().toLowerCase() ?? '';
      const value = milli(await readOptional(`${hwmon}/${mon}/${m[1]}_input`));
      if (value === null) continue;
      if (label.startsWith('core')) cores.push(value);
      else if (!labelled.has(label)) labelled.set(label, value);
    }
  }
  for (const want of ['tdie', 'tctl', 'tccd1']) if (labelled.has(want)) return labelled.get(want)!;
  for (const [label, value] of labelled) if (/package|physical/.test(label)) return value;
  if (cores.length) return round1(cores.reduce((a, b) => a + b, 0) / cores.length);

  const thermal = `${root}/sys/class/thermal`;
  const zones = (await listOptional(thermal)).filter((z) => /^thermal_zone\d+$/.test(z)).sort((a, b) => Number(a.slice(12)) - Number(b.slice(12)));
  for (const z of zones) {
    const type = (await readOptional(`${thermal}/${z}/type`))?.trim().toLowerCase() ?? '';
    if (/cpu|soc|x86_pkg_temp/.test(type)) {
      const t = milli(await readOptional(`${thermal}/${z}/temp`));
      if (t !== null) return t;
    }
  }
  return zones.length ? milli(await readOptional(`${thermal}/${zones[0]}/temp`)) : null;
}

/**
 * Up to LIMITS.maxStatusInterfaces non-loopback interfaces that have an address (os.networkInterfaces),
 * the one with the IPv4 default route first, then those whose operstate is up; one IPv4 and one
 * IPv6 address each (a global IPv6 address before a link-local one).
 */
export async function interfaces(root = ''): Promise<DeviceInterface[]> {
  const all = Object.entries(os.networkInterfaces()).filter(([, addrs]) => addrs?.length && !addrs.some((a) => a.internal));
  const defaultIf = defaultRouteInterface((await readOptional(`${root}/proc/net/route`)) ?? '');
  const up = new Set<string>();
  await Promise.all(all.map(async ([name]) => {
    if ((await readOptional(`${root}/sys/class/net/${name}/operstate`))?.trim() === 'up') up.add(name);
  }));
  const rank = (name: string): number => (name === defaultIf ? 0 : up.has(name) ? 1 : 2);
  return all
    .map(([name, addrs], i) => ({ name, addrs: addrs!, i }))
    .sort((a, b) => rank(a.name) - rank(b.name) || a.i - b.i)
    .slice(0, LIMITS.maxStatusInterfaces)
    .map(({ name, addrs }) => {
      const v4 = addrs.find((a) => a.family === 'IPv4');
      const v6s = addrs.filter((a) => a.family === 'IPv6');
      const v6 = v6s.find((a) => !/^fe80:/i.test(a.address)) ?? v6s[0];
      const mac = addrs[0]!.mac;
      return {
        name: name.slice(0, 32),
        mac: mac && mac !== '00:00:00:00:00:00' ? mac.slice(0, 32) : null,
        ipv4: v4 ? [v4.address.slice(0, 15)] : [],
        ipv6: v6 ? [v6.address.split('%')[0]!.slice(0, 45)] : [],
      };
    });
}

/** The interface of the IPv4 default route in /proc/net/route (destination 0, mask 0, up), lowest metric. */
export function defaultRouteInterface(table: string): string | null {
  let best: { name: string; metric: number } | null = null;
  for (const line of table.split('\n').slice(1)) {
    const [name, dest, , flags, , , metric, mask] = line.trim().split(/\s+/);
    if (!name || dest !== '00000000' || mask !== '00000000' || !(parseInt(flags ?? '0', 16) & 1)) continue;
    const m = Number(metric);
    if (!best || m < best.metric) best = { name, metric: m };
  }
  return best?.name ?? null;
}

function milli(text: string | null): number | null {
  const n = text === null ? NaN : Number(text.trim());
  return Number.isFinite(n) && n > -100_000 && n < 250_000 ? round1(n / 1000) : null;
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

/** A file's text, or null where it cannot be read (absent, a sensor that is not there, no permission). */
async function readOptional(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return null;
  }
}

async function listOptional(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}
