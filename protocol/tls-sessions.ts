import { isIP, type createConnection } from 'node:net';
import { connect, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls';

/** A connection opened ahead of its dial (TlsSessionCache.preconnect). */
interface WarmSocket {
  socket: TLSSocket;
  secureContext: SecureContext | undefined;
  minVersion: ConnectionOptions['minVersion'];
  /** Its 'error' and 'close' listener while it waits (forgets it). */
  drop: () => void;
  /** Closes it once it has waited `warmMaxIdleMs`. */
  timer: NodeJS.Timeout;
  /** A spare (TlsSessionCache.spare): its own holder, let go when it is taken or forgotten. */
  spare: boolean;
}

/** Per server name and port: the connections waiting, and how many preconnects are not released yet. */
interface WarmPool {
  sockets: WarmSocket[];
  holders: number;
}

/**
 * How long a connection opened ahead waits for its dial before it is closed: half the hub's default
 * `limits.authTimeoutMs` (10 s), after which the hub closes a connection that has not sent a valid
 * request. A device that answers later than this gets a connection of its own, dialled then.
 */
export const WARM_MAX_IDLE_MS = 5_000;

/**
 * The server name a connection sends and the key its tickets and early connections are kept under:
 * as ws's own tlsConnect, no SNI for an IP address. One function for dials and preconnects alike,
 * so that a dial finds the connection opened ahead for it.
 */
function serverOf(host: string, port: number, servername?: string): { servername: string; key: string } {
  const name = servername ?? (isIP(host) ? '' : host);
  return { servername: name, key: `${name || host}:${port}` };
}

/** The TLS options the dial that takes a preconnected socket will pass (none: Node's defaults). */
export interface PreconnectTls {
  secureContext?: SecureContext | undefined;
  minVersion?: ConnectionOptions['minVersion'];
}

/**
 * TLS for the relay dials (agent and service side): session resumption, and connections opened
 * ahead of their dial.
 *
 * Resumption: the cache remembers the newest session ticket per server name and port and offers it
 * on the next dial, as Node's https.Agent does for its own connections (ws dials with its own
 * `tls.connect`, so it never gets that cache). A resumed handshake skips the certificate message, its
 * verification and Node's conversion of the peer certificate to an object (`getPeerCertificate`,
 * which onConnectSecure calls on every full handshake): measured 3.08 -> 2.85 ms of client CPU and
 * 2.09 -> 1.82 ms of server CPU per wss:// connection on the 2-vCPU development machine. It is safe:
 * a ticket is only ever offered to the name and port it was issued for, through the same secure
 * context (the same trust anchors) that verified the full handshake it came from.
 *
 * Preconnect: a side that knows it will dial the relay soon (the SDK while the hub answers its
 * stream request, the agent while it connects the target) opens the TLS connection at once, so the
 * handshake overlaps that wait instead of following it. The dial takes it only if it goes to the
 * same server name and port through the same secure context; the connection is verified exactly as
 * a dial's own (it is one, made earlier). Unused, it is closed when its owner releases it.
 */
export class TlsSessionCache {
  private readonly sessions = new Map<string, Buffer>();
  private readonly warm = new Map<string, WarmPool>();
  private readonly max: number;
  private readonly warmMaxIdleMs: number;

  constructor(max = 32, warmMaxIdleMs = WARM_MAX_IDLE_MS) {
    this.max = max;
    this.warmMaxIdleMs = warmMaxIdleMs;
  }

  /**
   * A `createConnection` for ws (and https.request) that takes a preconnected socket or resumes
   * where it can (typed as net's, which is what ws declares; ws only ever calls it with an options
   * object).
   */
  readonly connect = ((opts: ConnectionOptions): TLSSocket => this.take(opts).socket) as unknown as typeof createConnection;

  /**
   * `connect` for one dial, which also tells whether a failure of that dial may be tried again: a
   * connection that was waiting (preconnect, spare) may have been closed by the server just as the
   * dial took it (the hub closes a connection that sent nothing for `limits.authTimeoutMs`). Then
   * the request never reached the server, and the dial fails with ECONNRESET or EPIPE.
   */
  forOneDial(): { createConnection: typeof createConnection; retryable: (err: NodeJS.ErrnoException) => boolean } {
    let tookWaiting = false;
    const take = ((opts: ConnectionOptions): TLSSocket => {
      const taken = this.take(opts);
      tookWaiting = taken.waiting;
      return taken.socket;
    }) as unknown as typeof createConnection;
    return { createConnection: take, retryable: (err) => tookWaiting && (err.code === 'ECONNRESET' || err.code === 'EPIPE') };
  }

  /** A waiting connection for these options, or a new dial that resumes where it can. */
  private take(opts: ConnectionOptions): { socket: TLSSocket; waiting: boolean } {
    const { servername, key } = serverOf(opts.host ?? 'localhost', Number(opts.port ?? 443), opts.servername);
    const warm = this.takeWarm(key, opts);
    if (warm) return { socket: warm, waiting: true };
    // As ws's own tlsConnect: never a Unix socket path.
    return { socket: this.dial(key, { ...opts, path: undefined, servername } as ConnectionOptions), waiting: false };
  }

  /**
   * Opens a connection to `url`'s host and port (https: or wss:) now, for a dial expected soon.
   * Returns the release function: call it once that dial is done or will not come. Dials take any
   * waiting connection to their server, oldest first; a release closes one only when more are
   * waiting than preconnects not yet released (so none is closed that a pending dial could take).
   */
  preconnect(url: URL, tls: PreconnectTls = {}): () => void {
    const opened = this.open(this.target(url), tls, false);
    if (!opened) return () => {};
    const { key } = opened;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const p = this.warm.get(key);
      if (!p) return;
      p.holders--;
      while (p.sockets.length > p.holders) {
        const oldest = p.sockets[0]!;
        this.forget(key, oldest);
        oldest.socket.destroy();
      }
      if (p.holders === 0 && p.sockets.length === 0) this.warm.delete(key);
    };
  }

  /**
   * Keeps one connection to `url`'s host and port waiting for the next dial, whenever it comes (a
   * client that opens streams one after another: its next stream then skips the TCP and TLS
   * handshakes). Does nothing if one is waiting already. A spare holds itself: it goes when a dial
   * takes it, or is closed once it has waited `warmMaxIdleMs`.
   */
  spare(url: URL, tls: PreconnectTls = {}): void {
    const target = this.target(url);
    if ((this.warm.get(target.key)?.sockets.length ?? 0) > 0) return;
    this.open(target, tls, true);
  }

  private target(url: URL): { host: string; port: number; servername: string; key: string } {
    // As ws: the host without an IPv6 address's brackets, 443 unless the URL names a port.
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = url.port ? Number(url.port) : 443;
    return { host, port, ...serverOf(host, port) };
  }

  /** Opens a waiting connection and counts its holder (null: options tls.connect refuses at once). */
  private open(target: ReturnType<TlsSessionCache['target']>, tls: PreconnectTls, spare: boolean): { key: string } | null {
    const { host, port, servername, key } = target;
    // noDelay as the dial's own: with Nagle, the upgrade request behind the handshake waited 40 ms
    // for a delayed ACK (set-up p50 13 -> 51 ms).
    const options: ConnectionOptions & { noDelay: boolean } = {
      host,
      port,
      servername,
      noDelay: true,
      ...(tls.secureContext ? { secureContext: tls.secureContext } : {}),
      ...(tls.minVersion ? { minVersion: tls.minVersion } : {}),
    };
    let socket: TLSSocket;
    try {
      socket = this.dial(key, options);
    } catch {
      return null; // the dial itself will say what is wrong
    }
    const warm: WarmSocket = {
      socket,
      secureContext: tls.secureContext,
      minVersion: tls.minVersion,
      drop: () => this.forget(key, warm),
      timer: setTimeout(() => this.forget(key, warm) && socket.destroy(), this.warmMaxIdleMs).unref(),
      spare,
    };
    socket.on('error', warm.drop); // an unused connection that fails is only forgotten
    socket.on('close', warm.drop);
    let pool = this.warm.get(key);
    if (!pool) this.warm.set(key, (pool = { sockets: [], holders: 0 }));
    pool.sockets.push(warm);
    pool.holders++;
    return { key };
  }

  /** Closes every connection still waiting (a client that is done). Tickets are kept. */
  closeWaiting(): void {
    for (const [key, pool] of [...this.warm]) {
      for (const w of [...pool.sockets]) {
        this.forget(key, w);
        w.socket.destroy();
      }
    }
  }

  /** How many server names and ports have a ticket (tests). */
  get size(): number {
    return this.sessions.size;
  }

  /** Connections opened ahead and not yet taken or released (tests). */
  get warmCount(): number {
    let n = 0;
    for (const pool of this.warm.values()) n += pool.sockets.length;
    return n;
  }

  private dial(key: string, opts: ConnectionOptions): TLSSocket {
    const session = this.sessions.get(key);
    const socket = connect({ ...opts, ...(session ? { session } : {}) });
    socket.on('session', (s: Buffer) => this.remember(key, s));
    return socket;
  }

  /**
   * A preconnected socket for a dial with these options: same server name and port, same secure
   * context and lowest version, and no trust anchors or client certificate of its own. The
   * connection was verified with Node's defaults (the chain against the context, the host name), as
   * both relay dials are; a caller that verifies otherwise does not preconnect.
   */
  private takeWarm(key: string, opts: ConnectionOptions): TLSSocket | undefined {
    const pool = this.warm.get(key);
    if (!pool) return undefined;
    if (opts.ca !== undefined || opts.cert !== undefined || opts.key !== undefined || opts.pfx !== undefined) return undefined;
    const w = pool.sockets.find(
      (c) => c.secureContext === opts.secureContext && c.minVersion === opts.minVersion && !c.socket.destroyed && c.socket.writable,
    );
    if (!w) return undefined;
    this.forget(key, w);
    w.socket.off('error', w.drop);
    w.socket.off('close', w.drop);
    return w.socket;
  }

  /** Takes a connection out of the waiting ones; false if it was not waiting (taken, or forgotten already). */
  private forget(key: string, w: WarmSocket): boolean {
    const pool = this.warm.get(key);
    const i = pool ? pool.sockets.indexOf(w) : -1;
    if (i < 0) return false;
    clearTimeout(w.timer);
    pool!.sockets.splice(i, 1);
    if (w.spare) pool!.holders--;
    if (pool!.holders === 0 && pool!.sockets.length === 0) this.warm.delete(key);
    return true;
  }

  private remember(key: string, session: Buffer): void {
    this.sessions.delete(key);
    if (this.sessions.size >= this.max) this.sessions.delete(this.sessions.keys().next().value as string);
    this.sessions.set(key, session);
  }
}
