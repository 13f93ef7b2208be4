import net from 'node:net';
import { DevstreamsError, adoptAccepted, bridge, silentLogger, type Logger, type WsDuplex } from '../protocol/index.js';
import type { DevstreamsClient, OpenStreamOptions } from './client.js';
import { HubRefusalError } from './errors.js';

export interface ForwarderOptions {
  client: Pick<DevstreamsClient, 'openStream'>;
  device: string;
  service: string;
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Listen port; 0 picks a free one (see `address` after start()). */
  port: number;
  stream?: OpenStreamOptions;
  logger?: Logger;
  /** Called with the number of client connections open whenever it changes. */
  onConnections?: (open: number) => void;
  /**
   * Called when a connection's stream could not be opened (the connection is reset). Given, it
   * replaces the warn log line: `devstreams forward` prints the same one line as `connect`.
   */
  onRefused?: (err: DevstreamsError, peer: string) => void;
  /** Called when an open stream ended because of the device side (the hub, the relay, the agent). */
  onStreamFailed?: (err: Error, peer: string) => void;
}

/**
 * A local TCP port that forwards to a device's service: each accepted connection gets its own
 * stream, bridged both ways. A connection whose stream cannot be opened is reset and the refusal
 * logged at warn. Any number of connections at once.
 */
export class Forwarder {
  private readonly opts: ForwarderOptions;
  private readonly log: Logger;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private readonly onConnections: (open: number) => void;
  private readonly streams = new Set<WsDuplex>();
  private readonly bridges = new Set<Promise<unknown>>();
  /** Streams being opened, so stop() and a departing client can give up on them. */
  private readonly opening = new Set<AbortController>();
  private stopping: Promise<void> | null = null;
  private bound: { host: string; port: number } | null = null;

  constructor(opts: ForwarderOptions) {
    this.opts = opts;
    this.log = opts.logger ?? silentLogger;
    this.onConnections = opts.onConnections ?? (() => {});
  }

  /** Client connections open now (being set up or forwarding). */
  get connections(): number {
    return this.sockets.size;
  }

  /** Client connections not ended yet: `connections` less those reset but not yet closed (a refused one). */
  get openConnections(): number {
    let open = 0;
    for (const s of this.sockets) if (!s.destroyed) open++;
    return open;
  }

  /** The address actually listened on (the real port when 0 was asked). */
  get address(): { host: string; port: number } {
    if (!this.bound) throw new Error('Forwarder is not started');
    return this.bound;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => this.onConnection(socket));
    this.server = server;
    const host = this.opts.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port: this.opts.port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err: err.message }, 'listener error'));
    const addr = server.address() as net.AddressInfo;
    this.bound = { host, port: addr.port };
  }

  private onConnection(accepted: net.Socket): void {
    if (this.stopping) {
      accepted.destroy();
      return;
    }
    // Reads into the process's one read buffer (protocol/tcp-read-buffer.ts), still paused.
    const socket = adoptAccepted(accepted, { allowHalfOpen: true });
    socket.setNoDelay(true);
    this.sockets.add(socket);
    this.onConnections(this.sockets.size);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.onConnections(this.sockets.size);
    });
    // The client may give up while the stream is being opened; the bridge then cleans up.
    socket.on('error', () => undefined);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const { device, service } = this.opts;
    const ac = new AbortController();
    this.opening.add(ac);
    // Only while the stream is being opened: an abort makes a DOMException (~40 us), and after the
    // open the bridge ends the stream when the client goes.
    const giveUp = (): void => ac.abort();
    socket.once('close', giveUp);
    const done = this.opts.client
      .openStream(device, service, { ...this.opts.stream, signal: ac.signal })
      .finally(() => {
        this.opening.delete(ac);
        socket.off('close', giveUp);
      })
      .then(
        (stream) => this.connect(socket, stream, peer),
        (err: unknown) => this.refused(socket, peer, err, ac.signal.aborted),
      )
      .finally(() => this.bridges.delete(done));
    this.bridges.add(done);
  }

  private refused(socket: net.Socket, peer: string, err: unknown, aborted: boolean): void {
    const { device, service } = this.opts;
    if (!socket.destroyed) socket.resetAndDestroy();
    if (aborted) {
      this.log.info({ device, service, peer }, 'connection closed before its stream was open');
      return;
    }
    const e = err instanceof DevstreamsError ? err : new DevstreamsError('INTERNAL', String((err as Error)?.message ?? err));
    if (this.opts.onRefused) return this.opts.onRefused(e, peer);
    this.log.warn(
      { device, service, peer, status: e.status, code: e.code, reason: e.reason },
      e instanceof HubRefusalError
        ? `${device}/${service} refused: ${e.status} ${e.code}: ${e.reason}`
        : `${device}/${service}: cannot open stream: ${e.reason}`,
    );
  }

  private async connect(socket: net.Socket, stream: WsDuplex, peer: string): Promise<void> {
    if (socket.destroyed || this.stopping) {
      stream.destroy();
      if (!socket.destroyed) socket.resetAndDestroy();
      return;
    }
    this.streams.add(stream);
    socket.resume();
    const log = this.log.child({ device: this.opts.device, service: this.opts.service, peer });
    try {
      const result = await bridge(socket, stream, log, { a: 'client', b: 'device' });
      if (result.error && result.failedSide === 'b' && !this.stopping) this.opts.onStreamFailed?.(result.error, peer);
    } finally {
      this.streams.delete(stream);
    }
  }

  /** Stops listening and ends every forwarded connection. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const server = this.server;
    const closed = server?.listening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const ac of this.opening) ac.abort();
    for (const stream of this.streams) stream.abort('SHUTTING_DOWN', 'forwarder stopping');
    for (const socket of this.sockets) socket.destroy();
    await Promise.allSettled([...this.bridges]);
    await closed;
  }
}
