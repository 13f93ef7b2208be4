import net from 'node:net';
import { allocWithHeadroom } from './headroom.js';

/**
 * One read buffer for the sockets at the edges of the tunnel: the agent's target sockets,
 * `devstreams forward`'s client sockets and `devstreams connect`'s standard input. Node 24 reads a
 * socket into a 64 KiB slab and, for the small reads of an interactive session, allocated a new slab
 * per read (gdb: `node::StreamReadSlab::Allocate`): a 1-byte ping-pong made 25-50 MB/s of
 * ArrayBuffers, and the process spent a sixth of its CPU collecting them. Reads land here instead
 * (one at a time: each is copied out before the event loop runs the next) and only the bytes read
 * are copied into the socket's readable side, so `pipe`, 'data', 'end' and backpressure work as before.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

export interface SharedRead {
  buffer: Buffer;
  callback: (n: number, buf: Uint8Array) => boolean;
}

/** `onread` for a TCP socket: the bytes read, copied, into its readable side; false pauses reading. */
export function sharedReadBuffer(socket: () => net.Socket): SharedRead {
  return {
    buffer: READ_BUFFER,
    // Copied into a buffer with room for a frame header, so a multiplexed channel sends it as it is.
    callback: (n, buf) => {
      const out = allocWithHeadroom(n);
      out.set(buf.subarray(0, n));
      return socket().push(out);
    },
  };
}

/**
 * What `new net.Socket()` accepts beyond @types/node 20's typings: a handle to wrap, and the two
 * ways Node itself starts a socket without reading (a server's `pauseOnConnect`, and `manualStart`
 * for `process.stdin`: no read until the first consumer asks).
 */
export interface WrapSocketOptions extends net.SocketConstructorOpts {
  handle?: unknown;
  pauseOnCreate?: boolean;
  manualStart?: boolean;
}

/** `new net.Socket(options)` (an existing handle or descriptor) reading into the shared buffer. */
export function sharedReadSocket(options: WrapSocketOptions): net.Socket {
  const withRead: WrapSocketOptions & { onread: SharedRead } = { ...options, onread: sharedReadBuffer(() => socket) };
  const socket = new net.Socket(withRead);
  return socket;
}

/**
 * An accepted connection (from a `net.Server` made with `pauseOnConnect`, not read from yet) moved
 * onto the shared read buffer. A server's sockets take no `onread`, so the connection's handle is
 * given to a new socket that has one, paused like the accepted one; the accepted socket, left
 * without a handle, is destroyed, which closes nothing but takes it out of the server's count (so
 * `server.close()` does not wait for it: its owner closes the new socket). A socket that is being
 * read already, or has no handle to give (closed, or a Node without `_handle`), is returned as it is.
 */
export function adoptAccepted(accepted: net.Socket, opts: { allowHalfOpen: boolean }): net.Socket {
  const holder = accepted as unknown as { _handle?: { reading?: boolean } | null };
  const handle = holder._handle;
  // Only a connection nothing has been read from: its handle is not reading and holds no bytes.
  if (!handle || handle.reading !== false || accepted.destroyed || accepted.readableLength > 0) return accepted;
  holder._handle = null;
  accepted.destroy();
  return sharedReadSocket({ handle, allowHalfOpen: opts.allowHalfOpen, readable: true, writable: true, pauseOnCreate: true });
}
