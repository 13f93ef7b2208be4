import type { IClientOptions } from 'mqtt';
import { WebSocket, type ClientOptions } from 'ws';
import { readRefusalBody } from '../protocol/index.js';
import { proxyRefusalOf, type ProxyRefusal } from './proxy.js';

/** What the hub answered instead of switching to WebSocket: its status, (bounded) body and Location. */
export interface UpgradeRefusal {
  status: number;
  body: Buffer;
  location: string | undefined;
  /** Set when it was the HTTP proxy that answered, refusing the CONNECT: the hub was never reached. */
  proxy?: ProxyRefusal;
}

/**
 * mqtt.js's `createWebsocket` for the control channel: the same WebSocket mqtt.js would make, plus
 * a listener for a refused upgrade. Without it ws fails the handshake with an error that carries no
 * code, which mqtt.js drops (it only passes on errors with a code), so a hub's clear "404 no
 * WebSocket endpoint at /" never reached the log. Here the refusal's status and body (at most
 * 16 KiB within 2 s, protocol/ws-dial.ts) go to `onRefused`, then the socket is closed, which mqtt.js
 * sees as the usual failed attempt ('close'); the control channel's backoff then applies.
 */
export function controlWebSocket(onRefused: (r: UpgradeRefusal) => void): NonNullable<IClientOptions['createWebsocket']> {
  return (url, subprotocols, opts) => {
    const ws = new WebSocket(url, subprotocols, opts.wsOptions as ClientOptions | undefined);
    ws.once('unexpected-response', (req, res) => {
      const status = res.statusCode ?? 0;
      const location = typeof res.headers.location === 'string' ? res.headers.location : undefined;
      const proxy = proxyRefusalOf(req);
      void readRefusalBody(res).then((body) => {
        onRefused({ status, body, location, ...(proxy ? { proxy } : {}) });
        // Still connecting (a listener for 'unexpected-response' keeps ws from aborting by itself):
        // terminate() aborts the request and emits 'error' (no code) and 'close'.
        if (ws.readyState === ws.CONNECTING) ws.terminate();
      });
    });
    return ws;
  };
}
