import type { DeviceInfo, StreamRecord } from '../protocol/index.js';
import { oneLine } from './errors.js';

/** Plain aligned text tables for `devstreams devices` and `devstreams streams`. */

/** Columns separated by two spaces, each padded to its widest cell; no trailing spaces. */
export function formatTable(header: string[], rows: string[][]): string {
  const cells = [header, ...rows].map((r) => r.map((c) => oneLine(c) || '-'));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd())
    .join('\n') + '\n';
}

export function formatDevices(devices: readonly DeviceInfo[], now: number = Date.now()): string {
  return formatTable(
    // The device's time since boot, not the agent's (`device ID` shows both): a column called only
    // UPTIME read as the agent's.
    ['ID', 'STATE', 'LAST SEEN', 'VERSION', 'SYSTEM UPTIME', 'STREAMS'],
    devices.map((d) => [
      d.id,
      stateOf(d),
      d.lastSeen === null ? 'never' : formatAgo(now - d.lastSeen),
      d.agentVersion ?? '-',
      uptimeOf(d, now),
      d.openStreams === null ? '-' : String(d.openStreams),
    ]),
  );
}

/** The device's system uptime (since boot) now: as of its last status, plus the time since (only while it is online). */
function uptimeOf(d: DeviceInfo, now: number): string {
  if (d.uptimeSec === null || d.uptimeSec === undefined || !d.online) return '-';
  const since = d.lastSeen === null ? 0 : Math.max(0, now - d.lastSeen);
  return formatDuration(d.uptimeSec * 1000 + since);
}

/** `devstreams device ID`: one `field: value` line each, the status's machine facts included. */
export function formatDevice(d: DeviceInfo, now: number = Date.now()): string {
  const s = d.system ?? null;
  const n = (v: number | null | undefined, f: (x: number) => string = String): string => (v === null || v === undefined ? '-' : f(v));
  const lines: [string, string][] = [
    ['id', d.id],
    ['state', stateOf(d)],
    ['last seen', d.lastSeen === null ? 'never' : formatAgo(now - d.lastSeen)],
    ['agent version', d.agentVersion ?? '-'],
    ['open streams', n(d.openStreams)],
    ['system uptime', uptimeOf(d, now)],
    ['agent uptime', n(s?.agentUptimeSec, (x) => formatDuration(x * 1000))],
    ['os', s?.os ?? '-'],
    ['kernel', s?.kernel ?? '-'],
    ['board', s?.board ?? '-'],
    ['arch', s?.arch ?? '-'],
    ['hostname', s?.hostname ?? '-'],
    ['cpus', n(s?.cpuCount)],
    ['load', s?.loadAvg ? s.loadAvg.map((x) => x.toFixed(2)).join(' ') : '-'],
    ['cpu temperature', n(s?.cpuTempC, (x) => `${x.toFixed(1)} °C`)],
    ['memory', s?.memTotalBytes ? `${n(s.memAvailableBytes, formatBytes)} available of ${formatBytes(s.memTotalBytes)}` : '-'],
    ['disk /', s?.diskTotalBytes ? `${n(s.diskUsedBytes, formatBytes)} used of ${formatBytes(s.diskTotalBytes)}` : '-'],
  ];
  for (const i of s?.interfaces ?? []) {
    lines.push([`interface ${i.name}`, [...i.ipv4, ...i.ipv6, i.mac ? `mac ${i.mac}` : ''].filter(Boolean).join(' ') || '-']);
  }
  const e = d.lastError ?? null;
  lines.push(['last error', e ? `${formatAgo(now - e.at)}: ${e.code}: ${e.message}` : '-']);
  const width = Math.max(...lines.map(([k]) => k.length)) + 1;
  return lines.map(([k, v]) => `${`${k}:`.padEnd(width)} ${oneLine(v) || '-'}`).join('\n') + '\n';
}

export function formatStreams(streams: readonly StreamRecord[], now: number = Date.now()): string {
  return formatTable(
    ['STREAM', 'DEVICE', 'SERVICE', 'BY', 'RESULT', 'CODE', 'CLOSED BY', 'DURATION', 'BYTES ->DEV', 'BYTES <-DEV', 'OPENED', 'REASON'],
    streams.map((s) => [
      s.streamId.slice(0, 8),
      s.device,
      s.service,
      s.requestedBy ?? '-',
      s.result,
      s.code,
      s.closedBy,
      formatDuration(s.durationMs),
      formatBytes(s.bytesToDevice),
      formatBytes(s.bytesFromDevice),
      formatAgo(now - s.openedAt),
      s.result === 'ok' ? '-' : shortened(s.reason, REASON_CHARS),
    ]),
  );
}

/**
 * How much of a reason the streams table shows (the last column, so it may run past the terminal's
 * width; --json has it in full). Enough for `cannot connect to 127.0.0.1:22: ECONNREFUSED` and
 * `service "web" is not allowed on this device`.
 */
export const REASON_CHARS = 60;

function shortened(text: string, max: number): string {
  const t = oneLine(text);
  return t.length <= max ? t : `${t.slice(0, max - 3)}...`;
}

/** `12s ago`, `5m ago`, `3h ago`, `4d ago`; `just now` under a second (clocks may differ a little). */
export function formatAgo(ms: number): string {
  if (ms < 1000) return 'just now';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** `850ms`, `12.3s`, `5m02s`, `1h04m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 59_950) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** `512 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/** online, offline, or disabled (on the hub: it cannot connect until enabled again). */
function stateOf(d: DeviceInfo): string {
  return d.online ? 'online' : d.disabled ? 'disabled' : 'offline';
}
