import type { Agent, IncomingMessage } from 'node:http';
import type { SecureContext } from 'node:tls';
import { WebSocket } from 'ws';
import { onAbort } from './abort.js';
import type { TlsSessionCache } from './tls-sessions.js';
import { streamDialOptions } from './ws-duplex.js';

/** Largest refusal body read from a hub that declines an upgrade; a longer one is read as empty. */
const MAX_REFUSAL_BYTES = 16 * 1024;
/** The oldest TLS a relay dial accepts (and a connection opened ahead for one). */
export const RELAY_MIN_TLS_VERSION = 'TLSv1.2';
/** How long a refusal's body may take to arrive once its headers have. */
const REFUSAL_BODY_TIMEOUT_MS = 2000;

export interface WsDial {
  url: URL;
  /** What the socket must speak: one subprotocol, or several offered newest first. */
  subprotocols: string | readonly string[];
  /** Bearer token for the upgrade. Never logged. */
  token: string;
  /** Deadline for the upgrade. */
  timeoutMs: number;
  /** Largest message the socket takes (default: a stream WebSocket's). */
  maxPayload?: number;
  ca?: string | Buffer | undefined;
  /** A TLS context built once (wins over `ca`). */
  secureContext?: SecureContext | undefined;
  /** Resumes TLS sessions and takes a connection opened ahead, if any. */
  sessions?: TlsSessionCache | undefined;
  /** An http.Agent that makes the connection (the agent's CONNECT proxy); then `sessions` is not used. */
  agent?: Agent | undefined;
  signal?: AbortSignal | undefined;
  /** The upgrade's answer, before the socket opens (its headers, its TCP socket). */
  onUpgrade?: (res: IncomingMessage) => void;
}

/** Why a dial gave no socket: each caller says it its own way (an error, or a fallback). */
export type WsDialFailure =
  | { kind: 'refused'; status: number; contentType: string | undefined; body: Buffer }
  | { kind: 'unreachable'; err: Error }
  | { kind: 'aborted'; err: Error };

/**
 * The one WebSocket dial to a hub's relay, for both clients: the agent's legs and multiplexed
 * connections (agent/relay-dialer.ts), the service side's stream WebSockets (service/relay.ts) and
 * multiplexed connection (service/mux-client.ts). The stream dial options, TLS verified (host name
 * included, TLS 1.2 or later), the trust anchors, a refusal's status and (bounded) body, and one
 * more try on a new connection when a connection opened ahead was closed by the hub just as it was
 * taken (the upgrade never reached the hub, so the token is unused). A server that picks no
 * subprotocol, or one not offered, fails the handshake in ws itself ('unreachable'). `take` gets
 * the socket as it opens, synchronously, so that frames right behind the upgrade find their
 * listeners; resolves with what it made, or with why there is none; never rejects.
 */
export function dialWs<T>(d: WsDial, take: (ws: WebSocket) => T, mayRetry = true): Promise<{ taken: T } | { failure: WsDialFailure }> {
  const connection = d.agent ? undefined : d.sessions?.forOneDial();
  const offered = typeof d.subprotocols === 'string' ? [d.subprotocols] : [...d.subprotocols];
  return new Promise((resolve) => {
    let settled = false;
    const ws = new WebSocket(d.url, offered, {
      ...streamDialOptions(d.token, d.timeoutMs),
      ...(d.maxPayload !== undefined ? { maxPayload: d.maxPayload } : {}),
      ...(d.secureContext ? { secureContext: d.secureContext } : d.ca !== undefined ? { ca: d.ca } : {}),
      rejectUnauthorized: true,
      minVersion: RELAY_MIN_TLS_VERSION,
      ...(connection ? { createConnection: connection.createConnection } : d.agent ? { agent: d.agent } : {}),
    });
    const fail = (failure: WsDialFailure): void => {
      if (settled) return;
      settled = true;
      unlisten();
      ws.on('error', () => {}); // terminate() on a connecting socket emits one
      if (ws.readyState !== ws.CLOSED) ws.terminate();
      resolve({ failure });
    };
    ws.on('error', (err: NodeJS.ErrnoException) => {
      if (mayRetry && !settled && connection?.retryable(err)) {
        settled = true;
        unlisten();
        ws.terminate();
        resolve(dialWs(d, take, false));
        return;
      }
      fail({ kind: 'unreachable', err });
    });
    const unlisten = onAbort(d.signal, (err) => fail({ kind: 'aborted', err }));
    ws.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      const contentType = res.headers['content-type'];
      void readRefusalBody(res).then((body) => fail({ kind: 'refused', status, contentType, body }));
    });
    if (d.onUpgrade) ws.once('upgrade', d.onUpgrade);
    ws.once('open', () => {
      if (settled) return;
      settled = true;
      unlisten();
      ws.removeAllListeners('error');
      ws.removeAllListeners('unexpected-response');
      resolve({ taken: take(ws) });
    });
  });
}

/** A refusal's body: at most MAX_REFUSAL_BYTES within REFUSAL_BODY_TIMEOUT_MS, else empty. Never rejects. */
export function readRefusalBody(res: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (body: Buffer): void => {
      clearTimeout(timer);
      res.removeAllListeners('data');
      res.destroy();
      resolve(body);
    };
    const timer = setTimeout(() => finish(Buffer.alloc(0)), REFUSAL_BODY_TIMEOUT_MS);
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_REFUSAL_BYTES) return finish(Buffer.alloc(0));
      chunks.push(c);
    });
    res.once('end', () => finish(Buffer.concat(chunks)));
    res.once('error', () => finish(Buffer.alloc(0)));
    res.once('aborted', () => finish(Buffer.alloc(0)));
  });
}
