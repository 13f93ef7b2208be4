import type { IncomingMessage } from 'node:http';
import type { SecureContext } from 'node:tls';
import { WebSocket } from 'ws';
import { streamDialOptions, type TlsSessionCache } from '../protocol/index.js';
import { onAbort, readBody } from './http.js';

/** Largest refusal body read from a hub that declines an upgrade. */
const MAX_REFUSAL_BYTES = 16 * 1024;

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
 * The service side's WebSocket dial to its hub, shared by a stream's own WebSocket (service/relay.ts)
 * and the multiplexed connection (service/mux-client.ts): the stream dial options, the TLS trust,
 * a refusal's status and (bounded) body, and one more try on a new connection
 * when a connection opened ahead was closed by the hub just as it was taken (the upgrade never
 * reached the hub). A server that picks no subprotocol, or one not offered, fails the handshake in
 * ws itself ('unreachable'). `take` gets the socket as it opens, synchronously, so that frames right behind
 * the upgrade find their listeners; resolves with what it made, or with why there is none; never
 * rejects.
 */
export function dialWs<T>(d: WsDial, take: (ws: WebSocket) => T, mayRetry = true): Promise<{ taken: T } | { failure: WsDialFailure }> {
  const connection = d.sessions?.forOneDial();
  const offered = typeof d.subprotocols === 'string' ? [d.subprotocols] : [...d.subprotocols];
  return new Promise((resolve) => {
    let settled = false;
    const ws = new WebSocket(d.url, offered, {
      ...streamDialOptions(d.token, d.timeoutMs),
      ...(d.maxPayload !== undefined ? { maxPayload: d.maxPayload } : {}),
      ...(d.secureContext ? { secureContext: d.secureContext } : d.ca !== undefined ? { ca: d.ca } : {}),
      ...(connection ? { createConnection: connection.createConnection } : {}),
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
      readBody(res, MAX_REFUSAL_BYTES).then(
        (body) => fail({ kind: 'refused', status, contentType, body }),
        () => fail({ kind: 'refused', status, contentType, body: Buffer.alloc(0) }),
      );
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
