import type { Socket } from 'node:net';
import type { Logger } from '../protocol/index.js';

/** The identity of one TCP connection, readable from both the raw socket and a TLS socket on top of it. */
interface Endpoint {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
  localPort?: number | undefined;
}

interface Pending {
  socket: Socket;
  address: string;
  timer: NodeJS.Timeout;
}

/**
 * Guards the hub's listeners against connections that never authenticate (slowloris, connection
 * floods): every accepted TCP connection must authenticate (a valid service token on an API call,
 * a valid stream token at the relay, an accepted MQTT CONNECT) within `authTimeoutMs`, or it is
 * destroyed; and at most `maxPerAddress` not-yet-authenticated connections from one source address
 * are held at once (more are destroyed at accept, before the TLS handshake).
 */
export class ConnectionGuard {
  private readonly maxPerAddress: number;
  private readonly authTimeoutMs: number;
  private readonly log: Logger;
  private readonly pending = new Map<string, Pending>();
  private readonly perAddress = new Map<string, number>();
  private refusedLogged = new Set<string>();

  constructor(opts: { maxPerAddress: number; authTimeoutMs: number; log: Logger }) {
    this.maxPerAddress = opts.maxPerAddress;
    this.authTimeoutMs = opts.authTimeoutMs;
    this.log = opts.log.child({ component: 'guard' });
  }

  /** Called with each accepted TCP socket; destroys it (and returns false) when its address is over the limit. */
  admit(socket: Socket): boolean {
    const address = socket.remoteAddress ?? 'unknown';
    const n = this.perAddress.get(address) ?? 0;
    if (n >= this.maxPerAddress) {
      // One warning per address per burst, so a flood cannot flood the log as well.
      if (!this.refusedLogged.has(address)) {
        this.refusedLogged.add(address);
        this.log.warn({ address, limit: this.maxPerAddress }, 'connection refused: too many unauthenticated connections from this address (limits.unauthenticatedPerAddress)');
      }
      socket.destroy();
      return false;
    }
    const key = keyOf(socket);
    this.perAddress.set(address, n + 1);
    const timer = setTimeout(() => {
      this.log.info({ address, timeoutMs: this.authTimeoutMs }, 'connection closed: not authenticated in time (limits.authTimeoutMs)');
      socket.destroy();
    }, this.authTimeoutMs);
    timer.unref();
    this.pending.set(key, { socket, address, timer });
    socket.once('close', () => this.release(key));
    return true;
  }

  /** The connection proved who it is: it no longer counts against its address nor has a deadline. */
  authenticated(socket: Endpoint): void {
    this.release(keyOf(socket));
  }

  /** Connections not yet authenticated, from one address or in all (for tests and metrics). */
  unauthenticatedCount(address?: string): number {
    if (address === undefined) return this.pending.size;
    return this.perAddress.get(address) ?? 0;
  }

  /** Clears every deadline (the sockets themselves are the server's to close). */
  stop(): void {
    for (const key of [...this.pending.keys()]) this.release(key);
  }

  private release(key: string): void {
    const p = this.pending.get(key);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(key);
    const n = (this.perAddress.get(p.address) ?? 1) - 1;
    if (n <= 0) {
      this.perAddress.delete(p.address);
      this.refusedLogged.delete(p.address);
    } else {
      this.perAddress.set(p.address, n);
    }
  }
}

function keyOf(s: Endpoint): string {
  return `${s.localPort ?? 0}|${s.remoteAddress ?? ''}|${s.remotePort ?? 0}`;
}
