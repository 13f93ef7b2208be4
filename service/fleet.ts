import type { ServiceContext } from './context.js';
import { formatDevices, formatStreams } from './tables.js';

/** `devstreams devices [--json]`: the hub's devices as a table, or the JSON array. */
export async function runDevices(ctx: ServiceContext, json: boolean): Promise<number> {
  const devices = await ctx.client.listDevices();
  ctx.client.close();
  ctx.out(json ? `${JSON.stringify(devices, null, 2)}\n` : formatDevices(devices));
  return 0;
}

/** `devstreams streams [--json]`: the hub's stream records (newest first) as a table, or the JSON array. */
export async function runStreams(ctx: ServiceContext, json: boolean): Promise<number> {
  const streams = await ctx.client.listStreams();
  ctx.client.close();
  ctx.out(json ? `${JSON.stringify(streams, null, 2)}\n` : formatStreams(streams));
  return 0;
}
