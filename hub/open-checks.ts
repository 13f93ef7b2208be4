import { DevstreamsError, OpenStreamBodySchema, describeIssues, isDeviceId, type Logger, type OpenStreamBody } from '../protocol/index.js';
import type { Relay } from './relay.js';
import { callerMayReachDevice, callerMayUseService, type Caller } from './service-tokens.js';
import type { StreamLimits } from './stream-limits.js';
import type { StreamRequests } from './stream-requests.js';

/**
 * The checks an open-stream request passes before anything is asked of the device, for the REST
 * call (`POST .../streams`) and the open-and-connect upgrade alike: the device id in the path, the
 * body (or query), then the token's scope. Throws DevstreamsError (400 BAD_REQUEST, 403 FORBIDDEN).
 */
export function admitOpenRequest(caller: Caller, rawDeviceId: string, input: unknown, log: Logger): { deviceId: string; body: OpenStreamBody } {
  let deviceId: string;
  try {
    deviceId = decodeURIComponent(rawDeviceId);
  } catch {
    throw new DevstreamsError('BAD_REQUEST', 'device id in the path is not valid URL encoding');
  }
  const body = OpenStreamBodySchema.safeParse(input);
  if (!body.success) throw new DevstreamsError('BAD_REQUEST', `invalid request body: ${describeIssues(body.error)}`);
  if (!isDeviceId(deviceId)) throw new DevstreamsError('BAD_REQUEST', `"${deviceId.slice(0, 80)}" is not a device id`);
  // Scope first, before the registry or the device is consulted: a token learns nothing of devices it may not reach.
  if (!callerMayReachDevice(caller, deviceId)) {
    log.warn({ device: deviceId }, 'stream refused: device outside the token scope');
    throw new DevstreamsError('FORBIDDEN', `service token "${caller.name}" may not reach device "${deviceId}"`);
  }
  if (!callerMayUseService(caller, body.data.service)) {
    log.warn({ device: deviceId, service: body.data.service }, 'stream refused: service outside the token scope');
    throw new DevstreamsError('FORBIDDEN', `service token "${caller.name}" may not use service "${body.data.service}"`);
  }
  return { deviceId, body: body.data };
}

/**
 * The open-stream flow of a request that joins its stream itself (the open-and-connect upgrade,
 * hub/stream-connect.ts; an OPEN on a multiplexed connection, hub/mux-open.ts): the token's rate,
 * the request's checks, the device's request and answer; then, if the service side left while the
 * device answered (`left`), the stream is abandoned. `input` reads the request's body (or query)
 * after the rate check, as the REST call does. Resolves with the stream to join, or null when
 * it was abandoned; throws DevstreamsError with the REST call's refusal.
 */
export async function openToJoin(
  deps: { streams: StreamRequests; relay: Relay; limits?: StreamLimits | undefined },
  caller: Caller,
  rawDeviceId: string,
  input: () => unknown,
  log: Logger,
  left: () => boolean,
): Promise<{ deviceId: string; streamId: string; token: string } | null> {
  deps.limits?.admitToken(caller.name); // first: a token over its rate learns nothing more
  const { deviceId, body } = admitOpenRequest(caller, rawDeviceId, input(), log);
  const result = await deps.streams.open(deviceId, body, caller.name);
  if (left()) {
    log.info({ stream: result.streamId, device: deviceId }, 'the service side left before the device answered');
    deps.relay.abandon(result.streamId, 'service', 'the service side left before the device answered');
    return null;
  }
  return { deviceId, streamId: result.streamId, token: result.token };
}
