import type { SecureContext } from 'node:tls';
import { STREAM_ID_HEADER, WS_SUBPROTOCOL, WsDuplex, dialWs, startHeartbeat, type TlsSessionCache } from '../protocol/index.js';
import { HubRequestError, refusalFromAnswer, unreachable } from './errors.js';

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
  /** Where the hub's CA is set, for TLS trust failures (errors.ts unreachable). */
  caSource?: string;
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
  return dialStream(d, url, where, what);
}

async function dialStream(d: RelayDial, url: URL, where: string, what: string): Promise<WsDuplex> {
  const r = await dialWs({
    url,
    subprotocols: WS_SUBPROTOCOL,
    token: d.token,
    timeoutMs: d.timeoutMs,
    ca: d.ca,
    secureContext: d.secureContext,
    sessions: d.sessions,
    signal: d.signal,
    onUpgrade: (res) => {
      const id = res.headers[STREAM_ID_HEADER];
      if (typeof id === 'string') d.onStreamId?.(id);
    },
  }, (ws) => {
    startHeartbeat(ws, d.pingIntervalMs ?? 15_000);
    return new WsDuplex(ws);
  });
  if ('taken' in r) return r.taken;
  const f = r.failure;
  switch (f.kind) {
    case 'refused':
      throw refusalFromAnswer(what, f.status, f.contentType, f.body);
    case 'unreachable':
      throw unreachable(where, f.err, d.caSource);
    case 'aborted':
      throw f.err;
  }
}
