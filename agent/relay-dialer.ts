import type { Agent } from 'node:http';
import type { SecureContext } from 'node:tls';
import type { WebSocket } from 'ws';
import {
  apiErrorOf,
  DevstreamsError,
  ERRORS,
  MUX_MAX_MESSAGE_BYTES,
  MUX_SUBPROTOCOLS,
  RELAY_MIN_TLS_VERSION,
  muxDeviceUrl,
  TlsSessionCache,
  WS_SUBPROTOCOL,
  dialWs,
  startHeartbeat,
  type Logger,
  type MessageSocket,
} from '../protocol/index.js';
import { RelayMuxPool } from './relay-mux-pool.js';

export interface RelayDialerOptions {
  /** The hub's TLS context (agent/hub-tls.ts: trust anchors, cipher order); undefined from it: Node's defaults. */
  secureContext?: () => SecureContext | undefined;
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
  /** Called when a multiplexed connection closes. */
  onMuxClosed?: () => void;
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
const DEFAULT_PING_INTERVAL_MS = 15_000;

/**
 * Joins the hub's relay for one accepted stream: as a channel of the hub node's multiplexed
 * connection (agent/relay-mux-pool.ts) when it offers one, else by dialling the stream's own
 * WebSocket. Either way TLS verified (host name included), no compression, frames bounded; the
 * stream token as a bearer token (subprotocol `devstreams.v1`) or in the ATTACH. Resolves with the
 * leg, paused; the caller wraps it in a WsDuplex and resumes it.
 */
export class RelayDialer {
  private readonly context: () => SecureContext | undefined;
  private readonly handshakeTimeoutMs: number;
  private readonly pingIntervalMs: number;
  private readonly agent: Agent | undefined;
  /** Resumes TLS sessions with the relay (direct dials only: through a proxy the agent dials). */
  private readonly sessions = new TlsSessionCache();
  /** The multiplexed connections, when enabled. */
  private readonly mux: RelayMuxPool | null;

  constructor(opts: RelayDialerOptions = {}) {
    this.context = opts.secureContext ?? (() => undefined);
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.pingIntervalMs = opts.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
    this.agent = opts.agent;
    const deviceToken = opts.deviceToken;
    this.mux =
      deviceToken && opts.log
        ? new RelayMuxPool({
            dial: (url) => this.dialOnce(url, MUX_SUBPROTOCOLS, deviceToken(), undefined),
            log: opts.log.child({ component: 'relay-mux' }),
            ...(opts.onMuxClosed ? { onClosed: opts.onMuxClosed } : {}),
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
    return this.sessions.preconnect(new URL(relayUrl), { secureContext: this.context(), minVersion: RELAY_MIN_TLS_VERSION });
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
    return this.dialOnce(relayUrl, WS_SUBPROTOCOL, token, signal);
  }

  /** Closes the multiplexed connections (once the streams on them have ended). */
  stop(): void {
    this.mux?.stop();
  }

  /** One dial (protocol/ws-dial.ts), its failures told as RelayDialErrors. Resolves the socket paused. */
  private async dialOnce(relayUrl: string, subprotocols: string | readonly string[], token: string, signal: AbortSignal | undefined): Promise<WebSocket> {
    const r = await dialWs(
      {
        url: new URL(relayUrl),
        subprotocols,
        token,
        timeoutMs: this.handshakeTimeoutMs,
        // A multiplexed connection's frames carry a header on top of a stream frame.
        ...(subprotocols === WS_SUBPROTOCOL ? {} : { maxPayload: MUX_MAX_MESSAGE_BYTES }),
        secureContext: this.context(),
        sessions: this.sessions,
        agent: this.agent,
        signal,
      },
      (ws) => {
        // Paused: frames that arrive right behind the upgrade (the service may already have sent
        // bytes) would otherwise be emitted before the caller listens, and be lost.
        ws.pause();
        startHeartbeat(ws, this.pingIntervalMs);
        return ws;
      },
    );
    if ('taken' in r) return r.taken;
    const f = r.failure;
    if (f.kind === 'aborted') throw new RelayDialError('agent is shutting down');
    if (f.kind === 'unreachable') throw new RelayDialError(`relay connection failed: ${(f.err as NodeJS.ErrnoException).code ?? f.err.message}`);
    const code = apiErrorOf(f.body)?.code;
    throw new RelayDialError(`relay refused the stream: HTTP ${f.status}${code ? ` ${code}` : ''}`, f.status, code);
  }
}
