import type { Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import {
  DevstreamsError,
  ERRORS,
  MUX_MAX_MESSAGE_BYTES,
  MUX_SERVICE_PATH,
  MUX_SUBPROTOCOLS,
  MuxConnection,
  dialWs,
  startHeartbeat,
  type MuxChannel,
  type MuxOpenRequest,
  type TlsSessionCache,
} from '../protocol/index.js';
import { HubRefusalError } from './errors.js';
import { hubUrl } from './http.js';

export interface ServiceMuxOptions {
  /** The hub's base URL (https://). */
  hub: URL;
  /** The service token. Never logged. */
  token: string;
  secureContext?: SecureContext | undefined;
  sessions: TlsSessionCache;
  /** Deadline of the connection's upgrade. */
  upgradeTimeoutMs: number;
  pingIntervalMs: number;
  /** The connection closes after this long with no stream. Default 60 s. */
  idleMs?: number;
}

/**
 * The SDK's one multiplexed connection to its hub (docs/MULTIPLEXING.md): opened with the first
 * stream, each stream an OPEN on it, closed after an idle minute or by close(). While it carries
 * no stream it does not keep the process alive. When the connection cannot be opened, `open`
 * resolves null and the caller opens the stream's own WebSocket; a hub that does not offer it
 * (404, 426) is remembered, and gets a WebSocket per stream from then on.
 */
export class ServiceMux {
  private readonly o: ServiceMuxOptions;
  private conn: MuxConnection | null = null;
  private socket: Socket | null = null;
  private dialing: Promise<MuxConnection | null> | null = null;
  private unsupported = false;
  private closed = false;

  constructor(opts: ServiceMuxOptions) {
    this.o = opts;
  }

  /**
   * Opens a stream on the connection: the channel (paused) and its stream id, or null when this
   * hub has no multiplexed endpoint. Rejects with HubRefusalError (the hub's or device's refusal,
   * or the connection's) or HubRequestError (the hub could not be reached).
   */
  async open(request: MuxOpenRequest, opts: { timeoutMs: number; signal?: AbortSignal | undefined }): Promise<{ channel: MuxChannel; streamId: string } | null> {
    const conn = await this.connection();
    if (!conn) return null;
    this.socket?.ref(); // a stream is being opened: the connection keeps the process alive
    try {
      return await conn.open(request, { timeoutMs: opts.timeoutMs, ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new DOMException('aborted', 'AbortError');
      // The connection went under the OPEN: the caller's own WebSocket does it again.
      if (err instanceof DevstreamsError && err.code === 'PEER_GONE' && !conn.usable) return null;
      if (!(err instanceof DevstreamsError)) throw err;
      throw new HubRefusalError(err.code, err.message, ERRORS[err.code].http);
    }
  }

  /** No more opens (they get null); the connection closes now, or when its last open stream ends. */
  close(): void {
    this.closed = true;
    if (this.conn) this.idle(this.conn);
  }

  private connection(): Promise<MuxConnection | null> {
    if (this.closed || this.unsupported) return Promise.resolve(null);
    if (this.conn?.usable) return Promise.resolve(this.conn);
    this.dialing ??= this.dial().finally(() => (this.dialing = null));
    return this.dialing;
  }

  private async dial(): Promise<MuxConnection | null> {
    const url = hubUrl(this.o.hub, MUX_SERVICE_PATH); // keeps a base path the hub URL has
    url.protocol = 'wss:';
    let socket: Socket | null = null;
    const r = await dialWs({
      url,
      subprotocols: MUX_SUBPROTOCOLS,
      token: this.o.token,
      timeoutMs: this.o.upgradeTimeoutMs,
      maxPayload: MUX_MAX_MESSAGE_BYTES,
      secureContext: this.o.secureContext,
      sessions: this.o.sessions,
      onUpgrade: (res) => (socket = res.socket as Socket),
    }, (ws) => {
      startHeartbeat(ws, this.o.pingIntervalMs);
      return new MuxConnection({ ws, role: 'client', idleCloseMs: this.o.idleMs ?? 60_000 });
    });
    // Any failure to open the connection leaves the stream to the established path, which reports
    // what is wrong (a bad token, an unreachable hub) as it always has. A hub without multiplexing
    // (404, 426) gets a WebSocket per stream from now on.
    if (!('taken' in r)) {
      const f = r.failure;
      if (f.kind === 'refused' && (f.status === 404 || f.status === 426)) this.unsupported = true;
      return null;
    }
    const conn = r.taken;
    this.socket = socket;
    conn.on('idle', () => this.idle(conn));
    conn.once('close', () => {
      if (this.conn === conn) this.conn = null;
    });
    this.conn = conn;
    return conn;
  }

  /** No stream: the connection lets the process exit (it closes itself after idleMs), or closes now after close(). */
  private idle(conn: MuxConnection): void {
    if (conn !== this.conn || conn.channelCount > 0) return;
    if (this.closed) return conn.close(1000, 'client closed');
    this.socket?.unref();
  }
}
