import { connect, type Socket } from 'node:net';
import { DevstreamsError } from '../protocol/index.js';

export interface TargetDialerOptions {
  /** How long a TCP connect may take before the target counts as unreachable. */
  connectTimeoutMs: number;
}

/**
 * One read buffer for every target socket of this process. Node 24 reads a socket into a 64 KiB
 * slab and, for the small reads of an interactive session, allocated a new slab per read (gdb:
 * `node::StreamReadSlab::Allocate`): the agent made 25-50 MB/s of ArrayBuffers in a 1-byte
 * ping-pong and spent a sixth of its CPU collecting them. Reads land here instead (one at a time:
 * each is copied out before the event loop runs the next) and only the bytes read are copied into
 * the socket's readable side, so `pipe`, 'data', 'end' and backpressure work as before.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** `onread` for a target socket: the bytes read, copied, into its readable side; false pauses reading. */
function readInto(socket: () => Socket): { buffer: Buffer; callback: (n: number, buf: Uint8Array) => boolean } {
  return { buffer: READ_BUFFER, callback: (n, buf) => socket().push(Buffer.from(buf.subarray(0, n))) };
}

/**
 * Connects the local TCP target of an accepted stream. Only ever called with a host and port taken
 * from an allowlist entry, after policy has been checked.
 */
export class TargetDialer {
  private connectTimeoutMs: number;

  constructor(opts: TargetDialerOptions) {
    this.connectTimeoutMs = opts.connectTimeoutMs;
  }

  /** A new connect timeout (SIGHUP reload), for the next dial. */
  setConnectTimeout(ms: number): void {
    this.connectTimeoutMs = ms;
  }

  /**
   * Resolves with a connected socket (paused: no bytes are read until it is piped, TCP_NODELAY set)
   * or rejects with DevstreamsError TARGET_UNREACHABLE whose reason names host:port and the errno code.
   * `signal` aborts a connect in progress (agent shutdown).
   */
  dial(host: string, port: number, signal?: AbortSignal): Promise<Socket> {
    const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    return new Promise((resolve, reject) => {
      // allowHalfOpen: the target's EOF is carried to the service while bytes may still flow to the target.
      const socket: Socket = connect({ host, port, noDelay: true, allowHalfOpen: true, onread: readInto(() => socket) });
      let settled = false;
      const done = (err: DevstreamsError | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.off('connect', onConnect);
        socket.off('error', onError);
        if (err) {
          socket.destroy();
          reject(err);
        } else resolve(socket);
      };
      const onConnect = (): void => {
        socket.setNoDelay(true);
        done(null);
      };
      const onError = (err: NodeJS.ErrnoException): void =>
        done(new DevstreamsError('TARGET_UNREACHABLE', `cannot connect to ${where}: ${err.code ?? err.message}`));
      const onAbort = (): void => done(new DevstreamsError('SHUTTING_DOWN', 'agent is shutting down'));
      const timer = setTimeout(
        () => done(new DevstreamsError('TARGET_UNREACHABLE', `cannot connect to ${where}: ETIMEDOUT after ${this.connectTimeoutMs} ms`)),
        this.connectTimeoutMs,
      );
      socket.once('connect', onConnect);
      socket.once('error', onError);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
