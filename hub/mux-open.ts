import { DevstreamsError, ERRORS, type Logger, type MuxChannel } from '../protocol/index.js';
import { openToJoin } from './open-checks.js';
import type { Relay } from './relay.js';
import type { Caller } from './service-tokens.js';
import type { StreamRequests } from './stream-requests.js';

export interface MuxOpenDeps {
  streams: StreamRequests;
  relay: Relay;
  log: Logger;
}

/**
 * An OPEN on a service's multiplexed connection (hub/relay-mux.ts): the open-and-connect flow
 * (hub/stream-connect.ts) on a channel. The same checks, limits, device request and answer; then
 * the channel joins the stream as its service side (ACCEPT with the stream id), or is refused with
 * the code and reason the REST call would have answered.
 */
export async function openOnChannel(deps: MuxOpenDeps, channel: MuxChannel, body: unknown, caller: Caller): Promise<void> {
  const log = deps.log.child({ caller: caller.name });
  let streamId: string | null = null;
  try {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new DevstreamsError('BAD_REQUEST', 'OPEN payload must be an object');
    const { device, ...rest } = body as { device?: unknown };
    if (typeof device !== 'string') throw new DevstreamsError('BAD_REQUEST', 'OPEN payload must name a device');
    const stream = await openToJoin(deps, caller, encodeDeviceId(device), { what: 'OPEN payload', read: () => rest }, log, () => channel.readyState === channel.CLOSED);
    if (!stream) return;
    streamId = stream.streamId;
    deps.relay.attachChannel(channel, stream.streamId, stream.token, { role: 'service' });
  } catch (err) {
    if (err instanceof DevstreamsError) return channel.refuse(ERRORS[err.code].ws, err.reason);
    log.error({ err: (err as Error).message }, 'open on a multiplexed connection failed');
    if (streamId) deps.relay.abandon(streamId, 'service', 'internal error');
    channel.refuse(ERRORS.INTERNAL.ws, 'internal error');
  }
}

/** The device id as the REST path carries it; a string with a lone surrogate (valid JSON) has no such form. */
function encodeDeviceId(device: string): string {
  try {
    return encodeURIComponent(device);
  } catch {
    throw new DevstreamsError('BAD_REQUEST', 'OPEN payload must name a device');
  }
}
