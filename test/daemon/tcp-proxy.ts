import { once } from 'node:events';
import net from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 for fault injection: `cut()` destroys every connection through it and
 * refuses new ones until `restore()`; `freeze()` stops forwarding without closing anything (a peer
 * that vanished without a FIN: only a ping can tell).
 */
export class TcpProxy {
  port = 0;
  accepted = 0;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private server: net.Server | undefined;
  private down = false;

  constructor(private readonly targetPort: number) {}

  async start(port = 0): Promise<this> {
    this.server = net.createServer((c) => {
      if (this.down) return void c.destroy();
      this.accepted++;
      const u = net.connect(this.targetPort, '127.0.0.1');
      const pair: [net.Socket, net.Socket] = [c, u];
      this.pairs.add(pair);
      const end = (): void => {
        this.pairs.delete(pair);
        c.destroy();
        u.destroy();
      };
      for (const s of pair) s.on('error', end).on('close', end);
      c.pipe(u);
      u.pipe(c);
    });
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  get open(): number {
    return this.pairs.size;
  }

  cut(): void {
    this.down = true;
    for (const [c, u] of this.pairs) {
      c.destroy();
      u.destroy();
    }
  }

  restore(): void {
    this.down = false;
  }

  /** Stops moving bytes on every current connection, both ways, and closes nothing. */
  freeze(): void {
    for (const [c, u] of this.pairs) {
      c.unpipe(u);
      u.unpipe(c);
      c.pause();
      u.pause();
    }
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
