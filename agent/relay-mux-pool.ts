import type { WebSocket } from 'ws';
import { DevstreamsError, MuxConnection, type Logger, type MuxChannel } from '../protocol/index.js';

export interface RelayMuxPoolOptions {
  /** Opens the multiplexed WebSocket at `url` (authenticated, offering subprotocols devstreams.v1.mux2 and devstreams.v1.mux); resolves it paused. */
  dial(url: string): Promise<WebSocket>;
  /** A connection with no stream for this long is closed. Default 60 s. */
  idleMs?: number;
  /** After a hub refused the connection (it does not offer it, or refused the device), per-stream WebSockets for this long. Default 10 min. */
  refusedRetryMs?: number;
  /** After a connection failed, per-stream WebSockets for this long. Default 5 s. */
  failedRetryMs?: number;
  /**
   * Called when a connection closes. The agent's idle reclaimer starts its wait again: the
   * connection's memory is freed a minute after the last stream, 50 s after the reclaimer's first
   * collection and trim (protocol/idle-memory.ts).
   */
  onClosed?: () => void;
  log: Logger;
}

interface Node {
  conn: MuxConnection | null;
  dialing: Promise<MuxConnection | null> | null;
  /** Until then, this node's streams use per-stream WebSockets. */
  offUntil: number;
}

/**
 * The agent's multiplexed connections (docs/MULTIPLEXING.md): one per hub node it has streams on,
 * keyed by its URL (protocol's muxDeviceUrl of the node's relay URLs), opened on that node's first stream and closed after an idle
 * minute. A node that refuses the connection (an older hub, `relay.multiplex: false`) gets
 * per-stream WebSockets for a while, and so does one whose connection failed: `attach` then
 * resolves null and the caller dials the stream's own WebSocket.
 */
export class RelayMuxPool {
  private readonly o: RelayMuxPoolOptions;
  private readonly nodes = new Map<string, Node>();
  private stopped = false;

  constructor(opts: RelayMuxPoolOptions) {
    this.o = opts;
  }

  /**
   * Attaches the stream to its node's connection. Resolves the channel (paused), or null when the
   * stream should have a WebSocket of its own; rejects with the relay's refusal of the stream
   * (a DevstreamsError: its token was refused, the stream expired).
   */
  async attach(muxUrl: string, streamId: string, token: string, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<MuxChannel | null> {
    const conn = await this.connection(muxUrl);
    if (!conn) return null;
    try {
      return await conn.attach({ streamId, token }, opts);
    } catch (err) {
      // The connection went away under the ATTACH: the token did not reach the relay's check, or
      // if it did, a WebSocket of the stream's own is refused as used (TOKEN_USED), as it should.
      if (err instanceof DevstreamsError && err.code === 'PEER_GONE' && !conn.usable) return null;
      throw err;
    }
  }

  /** True when the next stream to this node goes on an open connection (nothing to dial ahead). */
  hasConnection(muxUrl: string): boolean {
    const node = this.nodes.get(muxUrl);
    return !!node?.conn?.usable;
  }

  /** Closes every connection (their streams have ended by now); later attaches get null. */
  stop(): void {
    this.stopped = true;
    for (const node of this.nodes.values()) node.conn?.close(1001, 'agent shutting down');
    this.nodes.clear();
  }

  private connection(url: string): Promise<MuxConnection | null> {
    if (this.stopped) return Promise.resolve(null);
    let node = this.nodes.get(url);
    if (!node) {
      node = { conn: null, dialing: null, offUntil: 0 };
      this.nodes.set(url, node);
    }
    if (node.conn?.usable) return Promise.resolve(node.conn);
    if (node.dialing) return node.dialing;
    if (Date.now() < node.offUntil) return Promise.resolve(null);
    const n = node;
    n.dialing = this.open(url, n).finally(() => (n.dialing = null));
    return n.dialing;
  }

  private async open(url: string, node: Node): Promise<MuxConnection | null> {
    const log = this.o.log.child({ relay: new URL(url).origin });
    let ws: WebSocket;
    try {
      ws = await this.o.dial(url);
    } catch (err) {
      const e = err as Error & { status?: number };
      if (e.status !== undefined) {
        node.offUntil = Date.now() + (this.o.refusedRetryMs ?? 600_000);
        const level = e.status === 404 || e.status === 426 ? 'info' : 'warn';
        log[level]({ status: e.status, err: e.message }, 'relay refused a multiplexed connection; one WebSocket per stream');
      } else {
        node.offUntil = Date.now() + (this.o.failedRetryMs ?? 5_000);
        log.warn({ err: e.message }, 'multiplexed connection failed; one WebSocket per stream');
      }
      return null;
    }
    if (this.stopped) {
      ws.terminate();
      return null;
    }
    const conn = new MuxConnection({ ws, role: 'client', idleCloseMs: this.o.idleMs ?? 60_000 });
    ws.resume();
    node.conn = conn;
    log.info('multiplexed connection open');
    conn.once('close', (code: number) => {
      if (node.conn === conn) node.conn = null;
      log.info({ code }, 'multiplexed connection closed');
      this.o.onClosed?.();
    });
    return conn;
  }
}
