import { DevstreamsError, OpenStreamBodySchema, describeIssues, isDeviceId, type Logger, type OpenStreamBody } from '../protocol/index.js';
import type { Relay } from './relay.js';
import type { Caller } from './service-tokens.js';
import type { StreamRequests } from './stream-requests.js';

/**
 * The form of an open-stream request, for the REST call (`POST .../streams`) and the
 * open-and-connect upgrade alike: the device id in the path, then the body (or query). Throws
 * DevstreamsError 400 BAD_REQUEST. A malformed request is answered, never recorded: what it names
 * is not known to be a device id or a service. The token's scope and the rest of the hub's own
 * checks follow in StreamRequests.open, which records their refusals.
 */
export function parseOpenRequest(
  rawDeviceId: string,
  input: unknown,
  /** What carried `input`, for the refusal: the POST's body, the upgrade's query, the mux OPEN's payload. */
  what: 'request body' | 'query' | 'OPEN payload' = 'request body',
): { deviceId: string; body: OpenStreamBody } {
  let deviceId: string;
  try {
    deviceId = decodeURIComponent(rawDeviceId);
  } catch {
    throw new DevstreamsError('BAD_REQUEST', 'device id in the path is not valid URL encoding');
  }
  const body = OpenStreamBodySchema.safeParse(input);
  if (!body.success) throw new DevstreamsError('BAD_REQUEST', `invalid ${what}: ${describeIssues(body.error)}`);
  if (!isDeviceId(deviceId)) throw new DevstreamsError('BAD_REQUEST', `"${deviceId.slice(0, 80)}" is not a device id`);
  return { deviceId, body: body.data };
}

/**
 * The open-stream flow of a request that joins its stream itself (the open-and-connect upgrade,
 * hub/stream-connect.ts; an OPEN on a multiplexed connection, hub/mux-open.ts): the token's rate,
 * the request's form, the hub's checks, the device's request and answer; then, if the service side
 * left while the device answered (`left`), the stream is abandoned. `input.read` reads the
 * request's query (or OPEN payload) after the rate check, as the REST call reads its body. Resolves with the stream to join,
 * or null when it was abandoned; throws DevstreamsError with the REST call's refusal.
 */
export async function openToJoin(
  deps: { streams: StreamRequests; relay: Relay },
  caller: Caller,
  rawDeviceId: string,
  input: { what: 'query' | 'OPEN payload'; read: () => unknown },
  log: Logger,
  left: () => boolean,
): Promise<{ deviceId: string; streamId: string; token: string } | null> {
  deps.streams.admitToken(caller); // first: a token over its rate learns nothing more
  const { deviceId, body } = parseOpenRequest(rawDeviceId, input.read(), input.what);
  const result = await deps.streams.open(deviceId, body, caller);
  if (left()) {
    log.info({ stream: result.streamId, device: deviceId }, 'the service side left before the device answered');
    deps.relay.abandon(result.streamId, 'service', 'the service side left before the device answered');
    return null;
  }
  return { deviceId, streamId: result.streamId, token: result.token };
}
