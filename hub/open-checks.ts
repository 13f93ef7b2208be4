import { DevstreamsError, OpenStreamBodySchema, describeIssues, isDeviceId, type Logger, type OpenStreamBody } from '../protocol/index.js';
import { callerMayReachDevice, callerMayUseService, type Caller } from './service-tokens.js';

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
