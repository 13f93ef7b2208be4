import type { SecureContext } from 'node:tls';
import { WebSocket } from 'ws';
import { STREAM_ID_HEADER, WS_SUBPROTOCOL, WsDuplex, startHeartbeat, streamDialOptions, type TlsSessionCache } from '../protocol/index.js';
import { HubRequestError, refusalFromAnswer, unreachable } from './errors.js';
import { onAbort, readBody } from './http.js';

export interface RelayDial {
  /** wss:// relay URL from the hub's open-stream answer, or the hub's open-and-connect URL. */
  url: string;
  /** The single-use service-role stream token (the service token for open-and-connect). */
  token: string;
  /** Names the request in refusals (default `relay PATH`). */
  what?: string;
  /** Names the hub in transport errors (default the URL's origin and path). */
  target?: string;
  /** Called with the stream id the hub's answer names (STREAM_ID_HEADER), before the promise resolves. */
  onStreamId?: (streamId: string) => void;
  ca?: string | Buffer;
  /** A TLS context built once from `ca` (wins over `ca`): building one per dial costs ~1 ms of CPU. */
  secureContext?: SecureContext;
  /** Resumes TLS sessions across dials (one cache per client). */
  sessions?: TlsSessionCache;
  /** Deadline for the WebSocket upgrade. */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** Ping interval on the stream WebSocket (dead relay detection); 0 turns it off. Default 15 s. */
  pingIntervalMs?: number;
}

/** Largest refusal body read from a relay that declines the upgrade. */
const MAX_REFUSAL_BYTES = 16 * 1024;

/**
 * Dials the service side of a stream at the relay. Resolves with the stream once the upgrade is
 * accepted; a refused upgrade (401, 409 TOKEN_USED, 410 STREAM_EXPIRED, 426) rejects with a
 * HubRefusalError carrying the relay's code; a transport failure with a HubRequestError.
 */
export function dialRelay(d: RelayDial): Promise<WsDuplex> {
  let url: URL;
  try {
    url = new URL(d.url);
  } catch {
    return Promise.reject(new HubRequestError('the hub answered a relay URL that is not a URL'));
  }
  if (url.protocol !== 'wss:') {
    return Promise.reject(new HubRequestError(`the hub answered a relay URL with scheme ${url.protocol} (wss: expected)`));
  }
  const where = d.target ?? `${url.origin}${url.pathname}`;
  const what = d.what ?? `relay ${url.pathname}`;
  return dialOnce(d, url, where, what, true);
}

function dialOnce(d: RelayDial, url: URL, where: string, what: string, mayRetry: boolean): Promise<WsDuplex> {
  const connection = d.sessions?.forOneDial();
  return new Promise((resolve, reject) => {
    let settled = false;
    const ws = new WebSocket(url, WS_SUBPROTOCOL, {
      ...streamDialOptions(d.token, d.timeoutMs),
      ...(d.secureContext ? { secureContext: d.secureContext } : d.ca !== undefined ? { ca: d.ca } : {}),
      ...(connection ? { createConnection: connection.createConnection } : {}),
    });
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      unlisten();
      reject(err);
      if (ws.readyState !== ws.CLOSED) ws.terminate();
    };
    ws.on('error', (err: NodeJS.ErrnoException) => {
      // A waiting connection the server closed just as it was taken: once more, on a new one (the
      // request never reached the hub, which had closed that connection).
      if (mayRetry && !settled && connection?.retryable(err)) {
        settled = true;
        unlisten();
        ws.terminate();
        resolve(dialOnce(d, url, where, what, false));
        return;
      }
      fail(unreachable(where, err));
    });
    const unlisten = onAbort(d.signal, fail);
    ws.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      readBody(res, MAX_REFUSAL_BYTES).then(
        (body) => fail(refusalFromAnswer(what, status, res.headers['content-type'], body)),
        () => fail(refusalFromAnswer(what, status, res.headers['content-type'], Buffer.alloc(0))),
      );
    });
    ws.once('upgrade', (res) => {
      const id = res.headers[STREAM_ID_HEADER];
      if (typeof id === 'string') d.onStreamId?.(id);
    });
    ws.once('open', () => {
      if (settled) return;
      if (ws.protocol !== WS_SUBPROTOCOL) {
        fail(new HubRequestError(`relay ${where} accepted without the ${WS_SUBPROTOCOL} subprotocol`));
        return;
      }
      settled = true;
      unlisten();
      ws.removeAllListeners('error');
      ws.removeAllListeners('unexpected-response');
      startHeartbeat(ws, d.pingIntervalMs ?? 15_000);
      resolve(new WsDuplex(ws));
    });
  });
}
