import net from 'node:net';
import { allocWithHeadroom, headroomView } from './headroom.js';
import { noReadAhead } from './read-ahead.js';

/**
 * The most one read takes while the socket's reader keeps up: 256 KiB, so that a bulk transfer's
 * reads, and so its DATA frames, are up to four times Node's 64 KiB, and every process pays its cost
 * per message (a read, a frame, a message through ws and the relay, a write) a quarter as often.
 * Issue 6, twenty-fifth round, six pairs of `node bench/ab.mjs` (`--mib 512 --streams 1,8
 * --no-ping`, Thue-Morse order, the medians of the pairs' ratios): one stream up 218 -> 257 MB/s
 * (1.174) and down 269 -> 291 (1.061), eight up 284 -> 307 (1.067) and down 280 -> 315 (1.135);
 * `forward`'s CPU per byte 0.821 up and 0.862 down, the agent's 0.793 and 0.863. A frame stays a
 * quarter of a stream's first window (MUX_WINDOW_BYTES, 1 MiB), and an interactive session's reads
 * are as small as before.
 */
export const TCP_READ_BYTES = 256 * 1024;
/**
 * The most one read takes while the reader is paused or has not taken what it has: Node's own 64
 * KiB, so that a socket nobody reads holds at most its high-water mark and one such read.
 */
export const TCP_READ_BYTES_HELD = 64 * 1024;

/**
 * One read buffer for the sockets at the edges of the tunnel: the agent's target sockets,
 * `devstreams forward`'s client sockets and `devstreams connect`'s standard input. Node 24 reads a
 * socket into a 64 KiB slab and, for the small reads of an interactive session, allocated a new slab
 * per read (gdb: `node::StreamReadSlab::Allocate`): a 1-byte ping-pong made 25-50 MB/s of
 * ArrayBuffers, and the process spent a sixth of its CPU collecting them. Reads land here instead
 * (one at a time: each is copied out before the event loop runs the next) and only the bytes read
 * are copied into the socket's readable side, so `pipe`, 'data', 'end' and backpressure work as before.
 */
const READ_BUFFER = Buffer.allocUnsafe(TCP_READ_BYTES);
const READ_BUFFER_HELD = READ_BUFFER.subarray(0, TCP_READ_BYTES_HELD);

/**
 * What a socket at the edges takes in writes before it tells its writer to wait: a whole DATA frame
 * (one read at the other edge, up to TCP_READ_BYTES) and Node's own 64 KiB beyond it. With Node's
 * default alone, every large frame made write() return false although the kernel took it at once,
 * so each one cost a pause and a resume of its source (`pipe`), a 'drain' and the ticks they take.
 * A socket whose peer reads slowly holds up to 256 KiB more than before, beyond what the kernel took.
 */
export const EDGE_WRITE_BUFFER_BYTES = TCP_READ_BYTES + 64 * 1024;

/**
 * A read this large into a socket's own buffer is handed on in that buffer instead of copied out:
 * half of TCP_READ_BYTES, so that a buffer handed on holds at most twice the bytes it carries.
 */
export const TCP_READ_KEEP_BYTES = TCP_READ_BYTES / 2;

export interface SharedRead {
  /** Node asks for the next read's buffer after each read (and once when the socket starts). */
  buffer: () => Buffer;
  callback: (n: number, buf: Uint8Array) => boolean;
}

/**
 * `onread` for a TCP socket: the bytes read, with room for a frame's headers in front, into its
 * readable side; false pauses reading. A read goes into the shared buffer and is copied out, except
 * in a bulk transfer: after a read that filled TCP_READ_BYTES (more was surely waiting), the next read
 * goes into a buffer of the socket's own, and if it takes TCP_READ_KEEP_BYTES or more, that buffer is
 * pushed as it is, not copied (the copy was 7.4 % of `forward`'s CPU sending one stream up, issue 6,
 * twenty-sixth round); the socket gets a new one for its next read. So a socket holds a buffer of its
 * own only between two reads of a bulk transfer, and a shared buffer is never handed on.
 */
export function sharedReadBuffer(socket: () => net.Socket): SharedRead {
  let started = false;
  let filled = false; // the last read took all TCP_READ_BYTES
  let own: Buffer | null = null;
  return {
    buffer: () => {
      if (!started) {
        started = true; // asked while the socket is being made: `socket()` is not there yet
        return READ_BUFFER_HELD;
      }
      const s = socket();
      if (s.readableFlowing !== true || s.readableLength !== 0) return READ_BUFFER_HELD;
      return filled ? (own ??= allocWithHeadroom(TCP_READ_BYTES)) : READ_BUFFER;
    },
    callback: (n, buf) => {
      filled = n === TCP_READ_BYTES;
      if (own !== null && buf === own) {
        const mine = own;
        own = null;
        if (n >= TCP_READ_KEEP_BYTES) return socket().push(headroomView(mine, n));
      }
      // Copied into a buffer with room for the headers, so a multiplexed channel sends it as it is.
      const out = allocWithHeadroom(n);
      out.set(buf.subarray(0, n));
      return socket().push(out);
    },
  };
}

/**
 * What makes a socket one of the edges' (`socket` is read once it exists): it reads into the shared
 * buffer, and takes a whole DATA frame's write before it asks its writer to wait. Its maker also
 * turns its read-ahead off (noReadAhead) once it exists.
 */
export function edgeSocketOptions(socket: () => net.Socket): { onread: SharedRead; writableHighWaterMark: number } {
  return { onread: sharedReadBuffer(socket), writableHighWaterMark: EDGE_WRITE_BUFFER_BYTES };
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

/** `new net.Socket(options)` (an existing handle or descriptor) as an edge socket (edgeSocketOptions), without read-ahead. */
export function sharedReadSocket(options: WrapSocketOptions): net.Socket {
  const socket: net.Socket = new net.Socket({ ...options, ...edgeSocketOptions(() => socket) });
  noReadAhead(socket);
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
