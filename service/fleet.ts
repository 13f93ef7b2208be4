import { STREAM_RESULTS, type StreamQuery } from '../protocol/index.js';
import type { ServiceContext } from './context.js';
import { UsageError } from './options.js';
import { formatDevice, formatDevices, formatStreams } from './tables.js';

/** `devstreams devices [--json]`: the hub's devices as a table, or the JSON array. */
export async function runDevices(ctx: ServiceContext, json: boolean): Promise<number> {
  const devices = await ctx.client.listDevices();
  ctx.client.close();
  ctx.out(json ? `${JSON.stringify(devices, null, 2)}\n` : formatDevices(devices));
  return 0;
}

/** `devstreams device ID [--json]`: one device in full (its last status included). */
export async function runDevice(ctx: ServiceContext, id: string, json: boolean): Promise<number> {
  try {
    const device = await ctx.client.getDevice(id);
    ctx.out(json ? `${JSON.stringify(device, null, 2)}\n` : formatDevice(device));
    return 0;
  } finally {
    ctx.client.close();
  }
}

export interface StreamFilter {
  device?: string | undefined;
  since?: string | undefined;
  result?: string | undefined;
  limit?: string | undefined;
}

/** `devstreams streams [--device ID] [--since 1h] [--result R] [--limit N] [--json]`: newest first. */
export async function runStreams(ctx: ServiceContext, json: boolean, filter: StreamFilter = {}, now = Date.now()): Promise<number> {
  try {
    const streams = await ctx.client.listStreams(streamQueryOf(filter, now));
    ctx.out(json ? `${JSON.stringify(streams, null, 2)}\n` : formatStreams(streams));
    return 0;
  } finally {
    ctx.client.close();
  }
}

/** `devstreams endpoints`: the hub's public endpoints as JSON, for firewall rules. */
export async function runEndpoints(ctx: ServiceContext): Promise<number> {
  try {
    ctx.out(`${JSON.stringify(await ctx.client.endpoints(), null, 2)}\n`);
    return 0;
  } finally {
    ctx.client.close();
  }
}

/** Checks the flags (UsageError naming the bad one) and makes the API query. */
export function streamQueryOf(f: StreamFilter, now: number): StreamQuery {
  const q: StreamQuery = {};
  if (f.device !== undefined) q.device = f.device;
  if (f.since !== undefined) q.since = parseSince(f.since, now);
  if (f.result !== undefined) {
    if (!(STREAM_RESULTS as readonly string[]).includes(f.result)) {
      throw new UsageError(`--result must be one of ${STREAM_RESULTS.join(', ')} (got ${JSON.stringify(f.result)})`);
    }
    q.result = f.result as StreamQuery['result'];
  }
  if (f.limit !== undefined) {
    const n = Number(f.limit);
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new UsageError('--limit must be a whole number from 1 to 1000');
    q.limit = n;
  }
  return q;
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since`: a duration back from now (`90s`, `15m`, `1h`, `7d`) or a date (`2024-05-01T12:00:00Z`). Epoch ms. */
export function parseSince(value: string, now: number): number {
  const m = /^(\d{1,9})([smhd])$/.exec(value.trim());
  if (m) return Math.max(0, now - Number(m[1]) * UNIT_MS[m[2]!]!);
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const t = Date.parse(value);
    if (Number.isFinite(t)) return Math.max(0, t);
  }
  throw new UsageError(`--since must be a duration like 30s, 15m, 1h, 7d or a date like 2024-05-01T12:00:00Z (got ${JSON.stringify(value)})`);
}
