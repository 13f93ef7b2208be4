import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { STREAM_ID_HEADER, WS_SUBPROTOCOL, WsDuplex, apiPaths, newSecret, newStreamId, type ErrorCode } from '../../protocol/index.js';
import { tcpUnder, type TestTls } from '../helpers/tls.js';

/** A stand-in for the hub (REST API + relay) for service SDK tests: real HTTPS and WebSockets. */

export interface ApiCall {
  method: string;
  path: string;
  authorization: string | undefined;
  body: unknown;
}

export interface ApiAnswer {
  status: number;
  /** Sent as JSON unless a string or Buffer. */
  body?: unknown;
  contentType?: string;
  headers?: Record<string, string>;
}

export type ApiHandler = (call: ApiCall, hub: FakeHub) => ApiAnswer | Promise<ApiAnswer>;
/** What the relay does with an accepted stream WebSocket; default: echo with EOF (WsDuplex piped to itself). */
export type RelayHandler = (ws: WebSocket, streamId: string) => void;

export function errorBody(code: ErrorCode, status: number, reason: string): ApiAnswer {
  return { status, body: { error: { code, status, reason } } };
}

export function echoRelay(ws: WebSocket): void {
  const d = new WsDuplex(ws);
  d.on('error', () => undefined);
  d.pipe(d);
}

export class FakeHub {
  url = '';
  readonly calls: ApiCall[] = [];
  /** Stream tokens handed out and not yet used. */
  readonly tokens = new Map<string, string>();
  api: ApiHandler = (call, hub) => hub.defaultApi(call);
  relay: RelayHandler = echoRelay;
  /** false: no open-and-connect endpoint (404 NOT_FOUND, as a hub before it had one). */
  connectRoute = true;
  /** Upgrade requests received (relay and open-and-connect alike). */
  upgrades = 0;
  /** Resets the TCP connection under the n-th upgrade request (1-based) instead of answering it. */
  resetUpgrade: (n: number) => boolean = () => false;
  /** Set to refuse every relay upgrade with this answer. */
  relayRefusal: ApiAnswer | null = null;
  readonly relaySockets = new Set<WebSocket>();
  /** TLS connections accepted (API and relay alike), and how many have closed. */
  tlsConnections = 0;
  tlsClosed = 0;
  private readonly server: https.Server;
  private readonly wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
  });

  constructor(tls: TestTls) {
    this.server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => void this.onRequest(req, res));
    this.server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    this.server.on('secureConnection', (socket: Duplex) => {
      this.tlsConnections++;
      socket.once('close', () => this.tlsClosed++);
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const ws of this.relaySockets) ws.terminate();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * 201 with a fresh stream for POST .../streams and for an open-and-connect upgrade (which it then
   * accepts); empty lists for the queries; any device as online; 404 otherwise.
   */
  defaultApi(call: ApiCall): ApiAnswer {
    const m = /^\/api\/v1\/devices\/([^/]+)\/streams$/.exec(call.path);
    if (call.method === 'POST' && m) return { status: 201, body: this.newStream(decodeURIComponent(m[1]!), (call.body as { service: string }).service) };
    const c = CONNECT.exec(call.path);
    if (call.method === 'GET' && c) return { status: 201, body: this.newStream(decodeURIComponent(c[1]!), new URLSearchParams(c[2]).get('service') ?? '') };
    if (call.method === 'GET' && call.path === apiPaths.devices) return { status: 200, body: { devices: [] } };
    if (call.method === 'GET' && call.path === apiPaths.streams) return { status: 200, body: { streams: [] } };
    const d = /^\/api\/v1\/devices\/([^/?]+)(?:\?.*)?$/.exec(call.path);
    if (call.method === 'GET' && d) return { status: 200, body: { id: decodeURIComponent(d[1]!), online: true, lastSeen: Date.now(), agentVersion: null, openStreams: 0 } };
    return errorBody('NOT_FOUND', 404, 'no such path');
  }

  newStream(device: string, service: string) {
    const streamId = newStreamId();
    const token = newSecret();
    this.tokens.set(token, streamId);
    return {
      streamId,
      device,
      service,
      url: `wss://127.0.0.1:${new URL(this.url).port}${apiPaths.relay(streamId)}`,
      token,
      expiresAt: Date.now() + 30_000,
    };
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString();
    const call: ApiCall = {
      method: req.method ?? '',
      path: req.url ?? '',
      authorization: req.headers.authorization,
      body: text ? JSON.parse(text) : undefined,
    };
    this.calls.push(call);
    const answer = await this.api(call, this);
    send(res, answer);
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.resetUpgrade(++this.upgrades)) {
      tcpUnder(socket).resetAndDestroy();
      return;
    }
    const refuse = (a: ApiAnswer): void => {
      const body = Buffer.from(typeof a.body === 'string' ? a.body : JSON.stringify(a.body));
      socket.end(
        `HTTP/1.1 ${a.status} Refused\r\nContent-Type: ${a.contentType ?? 'application/json'}\r\n` +
          `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.toString()}`,
      );
    };
    if (CONNECT.test(req.url ?? '')) return void this.onConnect(req, socket, head, refuse);
    if (this.relayRefusal) return refuse(this.relayRefusal);
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const streamId = token ? this.tokens.get(token) : undefined;
    if (token && !streamId && this.usedTokens.has(token)) return refuse(errorBody('TOKEN_USED', 409, 'token already used'));
    if (!streamId || req.url !== apiPaths.relay(streamId)) return refuse(errorBody('UNAUTHORIZED', 401, 'unknown token'));
    this.tokens.delete(token!);
    this.usedTokens.add(token!);
    this.accept(req, socket, head, streamId);
  }

  /** An open-and-connect upgrade: the API handler answers it as it would the POST; a 201 is accepted. */
  private async onConnect(req: IncomingMessage, socket: Duplex, head: Buffer, refuse: (a: ApiAnswer) => void): Promise<void> {
    const call: ApiCall = { method: 'GET', path: req.url ?? '', authorization: req.headers.authorization, body: undefined };
    this.calls.push(call);
    if (!this.connectRoute) return refuse(errorBody('NOT_FOUND', 404, 'no WebSocket endpoint at this path'));
    if (this.relayRefusal) return refuse(this.relayRefusal);
    const answer = await this.api(call, this);
    if (answer.status !== 201) return refuse(answer);
    const streamId = (answer.body as { streamId: string }).streamId;
    this.wss.once('headers', (headers: string[]) => headers.push(`${STREAM_ID_HEADER}: ${streamId}`));
    this.accept(req, socket, head, streamId);
  }

  /** Completes an accepted upgrade and hands the stream's WebSocket to the relay handler. */
  private accept(req: IncomingMessage, socket: Duplex, head: Buffer, streamId: string): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.relaySockets.add(ws);
      ws.on('error', () => undefined);
      ws.once('close', () => this.relaySockets.delete(ws));
      this.relay(ws, streamId);
    });
  }

  private readonly usedTokens = new Set<string>();
}

const CONNECT = /^\/api\/v1\/devices\/([^/?]+)\/streams\/connect\?(.*)$/;

function send(res: ServerResponse, a: ApiAnswer): void {
  const isRaw = typeof a.body === 'string' || Buffer.isBuffer(a.body);
  const body = a.body === undefined ? '' : isRaw ? (a.body as string | Buffer) : JSON.stringify(a.body);
  res.writeHead(a.status, {
    'content-type': a.contentType ?? 'application/json',
    'x-devstreams-protocol': '1',
    ...a.headers,
  });
  res.end(body);
}
