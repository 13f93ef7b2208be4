import { connect, type Socket } from 'node:net';
import { DevstreamsError, edgeSocketOptions, noReadAhead } from '../protocol/index.js';

export interface TargetDialerOptions {
  /** How long a TCP connect may take before the target counts as unreachable. */
  connectTimeoutMs: number;
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
      // An edge socket: reads land in the process's one read buffer, a whole DATA frame is written
      // without waiting (protocol/tcp-read-buffer.ts), and no read-ahead (protocol/read-ahead.ts).
      const socket: Socket = connect({ host, port, noDelay: true, allowHalfOpen: true, ...edgeSocketOptions(() => socket) });
      noReadAhead(socket);
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
