import type { IncomingMessage } from 'node:http';
import { createSecureContext, type SecureContext } from 'node:tls';
import { WebSocket } from 'ws';
import type { Agent } from 'node:http';
import {
  ApiErrorSchema,
  DevstreamsError,
  ERRORS,
  MUX_MAX_MESSAGE_BYTES,
  MUX_SUBPROTOCOLS,
  muxDeviceUrl,
  TlsSessionCache,
  WS_SUBPROTOCOL,
  startHeartbeat,
  streamDialOptions,
  type Logger,
  type MessageSocket,
} from '../protocol/index.js';
import { RelayMuxPool } from './relay-mux-pool.js';

export interface RelayDialerOptions {
  /** Trust anchors for the relay's TLS certificate (system roots plus the configured CA), or undefined for the system's. */
  ca?: string[];
  /** How long the TLS + WebSocket handshake may take. */
  handshakeTimeoutMs?: number;
  /** Ping interval on each stream WebSocket (dead relay detection); 0 turns it off. Default 15 s. */
  pingIntervalMs?: number;
  /** An http.Agent for the dial (the CONNECT proxy), if one is used. */
  agent?: Agent;
  /**
   * Multiplexing (docs/MULTIPLEXING.md): a fresh device token for each multiplexed connection.
   * Without it, every stream dials a WebSocket of its own.
   */
  deviceToken?: () => string;
  /** Logs the multiplexed connections' lifecycle. */
  log?: Logger;
}

/** Why the relay did not accept the device's side of a stream. */
export class RelayDialError extends Error {
  /** HTTP status of a refusal before the upgrade, if the relay answered one. */
  readonly status?: number;
  /** The error code from the refusal's JSON body, if it had one. */
  readonly code?: string;
  constructor(message: string, status?: number, code?: string) {
    super(message);
    this.name = 'RelayDialError';
    if (status !== undefined) this.status = status;
    if (code !== undefined) this.code = code;
  }
}

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 15_000;
const MIN_TLS_VERSION = 'TLSv1.2';
const DEFAULT_PING_INTERVAL_MS = 15_000;
const MAX_REFUSAL_BODY_BYTES = 4096;

/**
 * Joins the hub's relay for one accepted stream: as a channel of the hub node's multiplexed
 * connection (agent/relay-mux-pool.ts) when it offers one, else by dialling the stream's own
 * WebSocket. Either way TLS verified (host name included), no compression, frames bounded; the
 * stream token as a bearer token (subprotocol `devstreams.v1`) or in the ATTACH. Resolves with the
 * leg, paused; the caller wraps it in a WsDuplex and resumes it.
 */
export class RelayDialer {
  private readonly ca: string[] | undefined;
  private readonly handshakeTimeoutMs: number;
  private readonly pingIntervalMs: number;
  private readonly agent: Agent | undefined;
  /**
   * Built once, on the first dial: a context with the system roots plus the hub's CA costs 35-130 ms
   * of CPU to build on a small machine, and it was built for every stream (set-up p50 113 ms).
   */
  private secureContext: SecureContext | undefined;
  /** Resumes TLS sessions with the relay (direct dials only: through a proxy the agent dials). */
  private readonly sessions = new TlsSessionCache();
  /** The multiplexed connections, when enabled. */
  private readonly mux: RelayMuxPool | null;

  constructor(opts: RelayDialerOptions = {}) {
    this.ca = opts.ca;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.pingIntervalMs = opts.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
    this.agent = opts.agent;
    const deviceToken = opts.deviceToken;
    this.mux =
      deviceToken && opts.log
        ? new RelayMuxPool({
            dial: (url) => this.dialOnce(url, MUX_SUBPROTOCOLS, deviceToken(), undefined, true),
            log: opts.log.child({ component: 'relay-mux' }),
          })
        : null;
  }

  /**
   * Opens the TLS connection for a dial to `relayUrl` that will follow soon (the stream passed the
   * policy and the target is being connected), so that its handshake overlaps the target's connect
   * and the answer's trip through the hub. Returns the release function: the session calls it once
   * its dial is done; it closes the connection if the dial did not take it (the target was
   * unreachable). Through a proxy there is nothing to open ahead.
   */
  preconnect(relayUrl: string): () => void {
    const mux = this.mux ? muxDeviceUrl(relayUrl) : null;
    if (this.agent || (mux && this.mux?.hasConnection(mux.url))) return () => {};
    return this.sessions.preconnect(new URL(relayUrl), { secureContext: this.context(), minVersion: MIN_TLS_VERSION });
  }

  /**
   * The device's leg of one stream: a channel of the node's multiplexed connection when there is
   * one (or it can be opened), else a WebSocket of its own. Resolves it paused.
   */
  async dial(relayUrl: string, token: string, signal?: AbortSignal): Promise<MessageSocket> {
    const mux = this.mux ? muxDeviceUrl(relayUrl) : null;
    if (this.mux && mux) {
      let channel;
      try {
        channel = await this.mux.attach(mux.url, mux.streamId, token, { timeoutMs: this.handshakeTimeoutMs, ...(signal ? { signal } : {}) });
      } catch (err) {
        const code = err instanceof DevstreamsError ? err.code : 'PEER_GONE';
        if (code === 'SHUTTING_DOWN' && signal?.aborted) throw new RelayDialError('agent is shutting down');
        throw new RelayDialError(`relay refused the stream: ${code}`, ERRORS[code].http, code);
      }
      if (channel) return channel;
    }
    return this.dialOnce(relayUrl, WS_SUBPROTOCOL, token, signal, true);
  }

  /** Closes the multiplexed connections (once the streams on them have ended). */
  stop(): void {
    this.mux?.stop();
  }

  private dialOnce(relayUrl: string, subprotocol: string | readonly string[], token: string, signal: AbortSignal | undefined, mayRetry: boolean): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const connection = this.agent ? undefined : this.sessions.forOneDial();
      const ws = new WebSocket(relayUrl, typeof subprotocol === 'string' ? subprotocol : [...subprotocol], {
        ...streamDialOptions(token, this.handshakeTimeoutMs),
        ...(subprotocol === WS_SUBPROTOCOL ? {} : { maxPayload: MUX_MAX_MESSAGE_BYTES }), // a multiplexed connection's frames carry a header
        ...(this.ca ? { secureContext: this.context() } : {}),
        rejectUnauthorized: true,
        minVersion: MIN_TLS_VERSION,
        ...(connection ? { createConnection: connection.createConnection } : { agent: this.agent }),
      });
      let settled = false;
      const settle = (err: RelayDialError | null): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        ws.off('open', onOpen);
        if (err) {
          // Keep an error listener: terminate() on a connecting socket emits one.
          ws.on('error', () => {});
          ws.terminate();
          reject(err);
        } else {
          ws.off('error', onError);
          // Paused: frames that arrive right behind the upgrade (the service may already have sent
          // bytes) would otherwise be emitted before the caller listens, and be lost.
          ws.pause();
          startHeartbeat(ws, this.pingIntervalMs);
          resolve(ws);
        }
      };
      const onOpen = (): void => settle(null);
      const onError = (err: NodeJS.ErrnoException): void => {
        // The connection opened ahead, closed by the hub just as the dial took it (the hub closes a
        // connection that sent nothing for its limits.authTimeoutMs): the upgrade never reached
        // the hub, so the token is unused; once more, on a connection of its own.
        if (mayRetry && !settled && connection?.retryable(err)) {
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          ws.off('open', onOpen);
          ws.on('error', () => {});
          ws.terminate();
          resolve(this.dialOnce(relayUrl, subprotocol, token, signal, false));
          return;
        }
        settle(new RelayDialError(`relay connection failed: ${err.code ?? err.message}`));
      };
      const onAbort = (): void => settle(new RelayDialError('agent is shutting down'));
      ws.once('open', onOpen);
      ws.on('error', onError);
      ws.once('unexpected-response', (_req, res: IncomingMessage) => {
        void readRefusal(res).then((code) =>
          settle(new RelayDialError(`relay refused the stream: HTTP ${res.statusCode}${code ? ` ${code}` : ''}`, res.statusCode, code)),
        );
      });
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The secure context of the configured trust anchors (built on first use), or none for the system's. */
  private context(): SecureContext | undefined {
    if (!this.ca) return undefined;
    return (this.secureContext ??= createSecureContext({ ca: this.ca }));
  }
}

/** Reads a bounded refusal body and returns its error code, if it is the protocol's error shape. */
function readRefusal(res: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (): void => {
      clearTimeout(timer);
      res.removeAllListeners('data');
      res.destroy();
      try {
        const parsed = ApiErrorSchema.safeParse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        resolve(parsed.success ? parsed.data.error.code : undefined);
      } catch {
        resolve(undefined);
      }
    };
    const timer = setTimeout(finish, 2000);
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_REFUSAL_BODY_BYTES) return finish();
      chunks.push(c);
    });
    res.once('end', finish);
    res.once('error', finish);
  });
}
