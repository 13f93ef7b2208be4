import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  CONNECT_STREAM_PATH_PATTERN,
  DevstreamsError,
  MUX_DEVICE_PATH,
  MUX_SERVICE_PATH,
  MUX_SUBPROTOCOL,
  OPEN_STREAM_PATH_PATTERN,
  RELAY_PATH_PATTERN,
  WS_SUBPROTOCOL,
  apiPaths,
  bearerToken,
  type DeviceInfo,
  type Logger,
  type StreamRecord,
} from '../protocol/index.js';
import type { DevicePresence } from './device-presence.js';
import { deviceInfo } from './device-info.js';
import { peerAddress, readJsonBody, sendError, sendJson } from './http-util.js';
import type { DeviceRegistry } from './registry.js';
import { parseOpenRequest } from './open-checks.js';
import { callerMayReachDevice, type Caller, type ServiceTokens } from './service-tokens.js';
import type { ObserveRoutes } from './observe-routes.js';
import type { StreamLog } from './stream-log.js';
import type { StreamRequests } from './stream-requests.js';

/**
 * The REST API (ARCHITECTURE "REST API"): every call carries a service token; every answer is JSON
 * with the protocol header; every error is `{error: {code, status, reason}}`.
 */
export class Api {
  private readonly tokens: ServiceTokens;
  private readonly registry: DeviceRegistry;
  private readonly presence: DevicePresence;
  private readonly streams: StreamRequests;
  private readonly streamLog: StreamLog;
  private readonly observe: ObserveRoutes | undefined;
  private readonly log: Logger;
  private readonly onAuthenticated: ((req: IncomingMessage) => void) | undefined;

  constructor(opts: {
    /** The service tokens and their scopes (hub/service-tokens.ts). */
    tokens: ServiceTokens;
    registry: DeviceRegistry;
    presence: DevicePresence;
    streams: StreamRequests;
    streamLog: StreamLog;
    /** Health, metrics and the fleet's read-only routes. */
    observe?: ObserveRoutes;
    log: Logger;
    /** Called for each request whose service token is valid (its connection has authenticated). */
    onAuthenticated?: (req: IncomingMessage) => void;
  }) {
    this.tokens = opts.tokens;
    this.registry = opts.registry;
    this.presence = opts.presence;
    this.streams = opts.streams;
    this.streamLog = opts.streamLog;
    this.observe = opts.observe;
    this.log = opts.log.child({ component: 'api' });
    this.onAuthenticated = opts.onAuthenticated;
  }

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  /** The https server's request listener. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    this.route(req, res).catch((err: unknown) => {
      if (err instanceof DevstreamsError) {
        if (!res.headersSent) sendError(res, err.code, err.reason, err.status, err);
        return;
      }
      this.log.error({ err: (err as Error).message, method: req.method, path: pathOf(req) }, 'api request failed');
      if (!res.headersSent) sendError(res, 'INTERNAL', 'internal error');
      else res.destroy();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = pathOf(req);
    if (this.observe?.handleOpen(req, res, path)) return;
    const ws = webSocketEndpoint(path);
    if (ws) {
      // An upgrade reaches the 'upgrade' handlers; a request here is a plain one to a WebSocket path.
      return sendError(res, 'VERSION_MISMATCH', `${path.slice(0, 200)} needs a WebSocket upgrade: GET with Upgrade: websocket, Connection: Upgrade and subprotocol ${ws}`, 426);
    }
    const scope = this.authenticate(req);
    const caller = scope?.name;
    if (!scope || !caller) {
      this.observe?.authFailure('api');
      this.log.warn({ method, path, address: peerAddress(req.socket) }, 'api call without a valid service token');
      return sendError(res, 'UNAUTHORIZED', 'a valid service token is required (Authorization: Bearer <token>)');
    }
    this.onAuthenticated?.(req);
    const log = this.log.child({ caller });
    log.debug({ method, path }, 'api call');

    const open = OPEN_STREAM_PATH_PATTERN.exec(path);
    if (open && method === 'POST') {
      this.streams.admitToken(scope); // before the body is read
      return this.openStream(req, res, open[1]!, log, scope);
    }
    if (path === apiPaths.devices && method === 'GET') {
      const devices: DeviceInfo[] = this.registry.ids().filter((id) => callerMayReachDevice(scope, id)).map((id) => deviceInfo(this.presence, this.registry, id));
      return sendJson(res, 200, { devices });
    }
    if (path === apiPaths.streams && method === 'GET' && !this.observe) {
      const streams: StreamRecord[] = this.streamLog.list({}, { devices: scope.devices, services: scope.services });
      return sendJson(res, 200, { streams });
    }
    if (this.observe?.handle(req, res, path, method, scope)) return;
    sendError(res, 'NOT_FOUND', `no such API route: ${method} ${path.slice(0, 200)}`);
  }

  private async openStream(req: IncomingMessage, res: ServerResponse, rawId: string, log: Logger, caller: Caller): Promise<void> {
    const { deviceId, body } = parseOpenRequest(rawId, await readJsonBody(req));
    const result = await this.streams.open(deviceId, body, caller);
    log.debug({ stream: result.streamId, device: deviceId }, 'stream handed to the service');
    sendJson(res, 201, result);
  }

  /** The service token presented (name and scope), or null. Every stored digest is checked in constant time. */
  private authenticate(req: IncomingMessage): Caller | null {
    const token = bearerToken(req.headers.authorization);
    return token ? this.tokens.authenticate(token) : null;
  }
}

/** The subprotocol of the WebSocket endpoint at `path`, or null when it is not one. */
function webSocketEndpoint(path: string): string | null {
  if (CONNECT_STREAM_PATH_PATTERN.test(path) || RELAY_PATH_PATTERN.test(path)) return WS_SUBPROTOCOL;
  if (path === MUX_SERVICE_PATH || path === MUX_DEVICE_PATH) return MUX_SUBPROTOCOL;
  return null;
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}
