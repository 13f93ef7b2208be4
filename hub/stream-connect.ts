import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  CONNECT_STREAM_PATH_PATTERN,
  DevstreamsError,
  bearerToken,
  type Logger,
} from '../protocol/index.js';
import { peerAddress, refuseUpgrade } from './http-util.js';
import { openToJoin } from './open-checks.js';
import type { Relay } from './relay.js';
import type { ServiceTokens } from './service-tokens.js';
import type { StreamRequests } from './stream-requests.js';
import { streamUpgradeProblem } from './upgrade-check.js';

/**
 * The open-and-connect upgrade (ARCHITECTURE "Opening a stream in one request"):
 * `GET /api/v1/devices/{id}/streams/connect?service=S[&timeoutMs=N]` with `Upgrade: websocket`
 * and the service token. The hub runs the open-stream flow of `POST .../streams` (same checks,
 * limits, device request and answer), and then, instead of answering a relay URL and token,
 * joins this connection to the stream as its service side: one request and one connection where
 * the REST call and the relay dial took two of each. A refusal is the REST call's: its HTTP status
 * and `{error: {code, status, reason}}` body, before any upgrade.
 */
export class StreamConnect {
  private readonly tokens: ServiceTokens;
  private readonly streams: StreamRequests;
  private readonly relay: Relay;
  private readonly log: Logger;
  private readonly authFailure: () => void;

  constructor(opts: {
    tokens: ServiceTokens;
    streams: StreamRequests;
    relay: Relay;
    log: Logger;
    /** Counts a missing or unknown service token (the API's auth-failure metric). */
    authFailure?: () => void;
  }) {
    this.tokens = opts.tokens;
    this.streams = opts.streams;
    this.relay = opts.relay;
    this.log = opts.log.child({ component: 'api' });
    this.authFailure = opts.authFailure ?? (() => {});
  }

  /**
   * Takes an upgrade on the open-and-connect path (false: not that path). `onAuthenticated` runs
   * once the service token is valid (the connection guard stops timing the connection).
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, onAuthenticated?: () => void): boolean {
    const raw = req.url ?? '';
    const q = raw.indexOf('?');
    const m = CONNECT_STREAM_PATH_PATTERN.exec(q < 0 ? raw : raw.slice(0, q));
    if (!m) return false;
    this.connect(m[1]!, q < 0 ? '' : raw.slice(q + 1), req, socket, head, onAuthenticated).catch((err: unknown) => {
      if (err instanceof DevstreamsError) return refuseUpgrade(socket, err.code, err.reason, err);
      this.log.error({ err: (err as Error).message }, 'open-and-connect failed');
      refuseUpgrade(socket, 'INTERNAL', 'internal error');
    });
    return true;
  }

  private async connect(rawId: string, query: string, req: IncomingMessage, socket: Duplex, head: Buffer, onAuthenticated?: () => void): Promise<void> {
    const problem = streamUpgradeProblem(req);
    if (problem) throw new DevstreamsError(problem.code, problem.reason);
    const token = bearerToken(req.headers.authorization);
    const caller = token ? this.tokens.authenticate(token) : null;
    if (!caller) {
      this.authFailure();
      this.log.warn({ address: peerAddress(req.socket) }, 'open-and-connect without a valid service token');
      throw new DevstreamsError('UNAUTHORIZED', 'a valid service token is required (Authorization: Bearer <token>)');
    }
    onAuthenticated?.();
    const log = this.log.child({ caller: caller.name });
    const watch = watchWhileWaiting(socket);
    let stream;
    try {
      const deps = { streams: this.streams, relay: this.relay };
      stream = await openToJoin(deps, caller, rawId, { what: 'query', read: () => queryBody(query) }, log, () => watch.gone());
    } finally {
      watch.stop();
    }
    if (!stream) return void socket.destroy();
    log.debug({ stream: stream.streamId, device: stream.deviceId }, 'stream joined by its requester');
    this.relay.join(stream.streamId, stream.token, req, socket, watch.early.length ? Buffer.concat([head, ...watch.early]) : head);
  }
}

/**
 * The open-stream body from the query string (`service`, `timeoutMs`), for OpenStreamBodySchema to
 * judge: a repeated parameter is an error; an unknown one is kept so that the schema names it.
 */
function queryBody(query: string): unknown {
  const params = new URLSearchParams(query);
  const body: Record<string, unknown> = {};
  for (const key of new Set(params.keys())) {
    const values = params.getAll(key);
    if (values.length > 1) throw new DevstreamsError('BAD_REQUEST', `query parameter "${key.slice(0, 40)}" is given ${values.length} times`);
    const value = values[0]!;
    body[key] = key === 'timeoutMs' && /^\d{1,9}$/.test(value) ? Number(value) : value;
  }
  return body;
}

/** Bytes a client may send after its upgrade request and before the answer (a WebSocket client sends none). */
const MAX_EARLY_BYTES = 64 * 1024;

/**
 * Reads a waiting upgrade's socket while the device answers, to notice a client that leaves (the
 * HTTP server leaves an upgraded socket unread, so its end would go unseen until the deadline).
 * Bytes that arrive are kept, in order, for the WebSocket's `head`; past MAX_EARLY_BYTES the
 * client is cut off. `stop()` puts the socket back unread, as the HTTP server handed it over.
 */
function watchWhileWaiting(socket: Duplex): { early: Buffer[]; gone: () => boolean; stop: () => void } {
  const early: Buffer[] = [];
  let bytes = 0;
  let gone = false;
  const onData = (chunk: Buffer): void => {
    early.push(chunk);
    bytes += chunk.length;
    if (bytes > MAX_EARLY_BYTES) socket.destroy();
  };
  const onGone = (): void => {
    gone = true;
  };
  socket.on('data', onData);
  socket.once('end', onGone);
  socket.once('close', onGone);
  return {
    early,
    gone: () => gone || socket.destroyed,
    stop: () => {
      socket.off('data', onData);
      socket.off('end', onGone);
      socket.off('close', onGone);
      socket.pause();
      // Neither flowing nor paused: the state Node's HTTP server hands an upgrade over in, in which
      // the WebSocket's own 'data' listener starts the reading again.
      (socket as { readableFlowing: boolean | null }).readableFlowing = null;
    },
  };
}
