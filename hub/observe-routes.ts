import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  DEVICE_PATH_PATTERN,
  DeviceQuerySchema,
  DevstreamsError,
  StreamQuerySchema,
  apiPaths,
  bearerToken,
  describeIssues,
  isDeviceId,
  type HubEndpoints,
} from '../protocol/index.js';
import type { DevicePresence } from './device-presence.js';
import type { Health } from './health.js';
import { sendError, sendJson } from './http-util.js';
import type { AuthEndpoint, HubMetrics } from './metrics.js';
import type { DeviceRegistry } from './registry.js';
import { deviceInfo } from './device-info.js';
import { callerMayReachDevice, callerMayUseService, serviceForbidden, type Caller } from './service-tokens.js';
import type { StreamLog } from './stream-log.js';

export const METRICS_PATH = '/metrics';

/**
 * The API's read-only fleet routes (README "Observe the fleet"): `/healthz` and `/readyz` without a
 * token, `/metrics` with a service or metrics token, and behind the service token
 * `GET /api/v1/devices/{id}[?service=S]`, `GET /api/v1/streams?device=&since=&result=&limit=` and
 * `GET /api/v1/endpoints`.
 */
export interface ObserveRoutesOptions {
  registry: DeviceRegistry;
  presence: DevicePresence;
  streamLog: StreamLog;
  health: Health;
  metrics: HubMetrics;
  /** Whether a token may read /metrics (a service token or a metrics token). */
  mayReadMetrics: (token: string) => boolean;
  endpoints: () => HubEndpoints;
}

export class ObserveRoutes {
  private readonly o: ObserveRoutesOptions;

  constructor(opts: ObserveRoutesOptions) {
    this.o = opts;
  }

  authFailure(endpoint: AuthEndpoint): void {
    this.o.metrics.authFailure(endpoint);
  }

  /** Routes served before the service-token check; true if it answered. */
  handleOpen(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (this.o.health.handle(req, res, path)) return true;
    if (path !== METRICS_PATH) return false;
    const token = bearerToken(req.headers.authorization);
    if (!token || !this.o.mayReadMetrics(token)) {
      this.o.metrics.authFailure('metrics');
      sendError(res, 'UNAUTHORIZED', 'a service or metrics token is required (Authorization: Bearer <token>)');
      return true;
    }
    void this.o.metrics.render().then(
      ({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      () => sendError(res, 'INTERNAL', 'metrics unavailable'),
    );
    return true;
  }

  /**
   * Routes behind the service token; true if it answered. Devices outside the caller's scope are
   * unknown to it, and the history leaves out streams to devices or services outside it (the names
   * of other tokens on the records it may see are shown: docs/THREAT-MODEL.md). `?service=S` on a
   * device asks as well whether the token may use that service (403 FORBIDDEN if not), so that
   * `forward` can say so before it listens; the device's own allowlist is only learnt by asking the
   * device for a stream.
   */
  handle(req: IncomingMessage, res: ServerResponse, path: string, method: string, caller: Caller): boolean {
    if (method !== 'GET') return false;
    const mayReach = (device: string): boolean => callerMayReachDevice(caller, device);
    if (path === apiPaths.streams) {
      // The scope is part of the query: LIMIT then counts only records the token may see.
      const streams = this.o.streamLog.list(parseQuery(req), { devices: caller.devices, services: caller.services });
      sendJson(res, 200, { streams });
      return true;
    }
    if (path === apiPaths.endpoints) {
      sendJson(res, 200, this.o.endpoints());
      return true;
    }
    const m = DEVICE_PATH_PATTERN.exec(path);
    if (!m) return false;
    let id: string;
    try {
      id = decodeURIComponent(m[1]!);
    } catch {
      throw new DevstreamsError('BAD_REQUEST', 'device id in the path is not valid URL encoding');
    }
    if (!isDeviceId(id)) throw new DevstreamsError('BAD_REQUEST', `"${id.slice(0, 80)}" is not a device id`);
    if (!this.o.registry.has(id) || !mayReach(id)) throw new DevstreamsError('DEVICE_UNKNOWN', `no device "${id}" is registered`);
    const { service } = parseDeviceQuery(req);
    if (service !== undefined && !callerMayUseService(caller, service)) throw serviceForbidden(caller, service);
    sendJson(res, 200, deviceInfo(this.o.presence, this.o.registry, id, true));
    return true;
  }
}

/** The query string of `GET /api/v1/streams`, checked (400 naming the bad parameter). */
function parseQuery(req: IncomingMessage): ReturnType<typeof StreamQuerySchema.parse> {
  const q = StreamQuerySchema.safeParse(rawQuery(req));
  if (!q.success) throw new DevstreamsError('BAD_REQUEST', `invalid query: ${describeIssues(q.error)}`);
  return q.data;
}

/** The query string of `GET /api/v1/devices/{id}`, checked (400 naming the bad parameter). */
function parseDeviceQuery(req: IncomingMessage): ReturnType<typeof DeviceQuerySchema.parse> {
  const q = DeviceQuerySchema.safeParse(rawQuery(req));
  if (!q.success) throw new DevstreamsError('BAD_REQUEST', `invalid query: ${describeIssues(q.error)}`);
  return q.data;
}

/** A query string's parameters; one given twice is a 400. */
function rawQuery(req: IncomingMessage): Record<string, string> {
  const url = new URL(req.url ?? '/', 'https://hub');
  const raw: Record<string, string> = {};
  for (const [k, v] of url.searchParams) {
    if (k in raw) throw new DevstreamsError('BAD_REQUEST', `query parameter "${k.slice(0, 40)}" given twice`);
    raw[k] = v;
  }
  return raw;
}
