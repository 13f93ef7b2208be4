import { Duplex } from 'node:stream';
import type { ClientOptions } from 'ws';
import { DevstreamsError, ERRORS, type ErrorCode } from './errors.js';
import { MESSAGE_PARTS } from './bridge.js';
import { LIMITS } from './limits.js';
import { joined, type MessageSocket } from './message-socket.js';
import { noReadAhead } from './read-ahead.js';

/**
 * Stream framing on a WebSocket (both legs, device and service, through the relay):
 * - binary frames carry the TCP bytes, in order;
 * - text frames carry small JSON control messages; today only `{"type":"eof"}`: the sender will
 *   send no more bytes (a TCP half-close), but keeps reading;
 * - once a side has both sent and received EOF it closes with 1000. Any other close ends the stream
 *   abnormally, with a code from ERRORS (4xxx) and a reason.
 */
export const EOF_FRAME = '{"type":"eof"}';

/**
 * How much a WsDuplex holds of what it received before it pauses its WebSocket: 128 KiB (two
 * 64 KiB messages), not the 1 MiB send-side high-water mark. With 1 MiB, a process receiving 8
 * streams into slow sockets held up to 8 MiB in its heap and spent more CPU on it: `devstreams
 * forward`, 8 streams downloading, 5.33/4.92/4.21/4.88 -> 4.43/4.40/3.24/3.99 ns/B over four
 * alternating runs of `node bench/per-process.mjs devstreams`. It also bounds what 1,000 streams
 * to slow readers can hold (128 MB instead of 1 GB).
 */
export const READ_BUFFER_BYTES = 128 * 1024;

/** The error a WsDuplex is destroyed with when its WebSocket closes before both EOFs. */
export class StreamClosedError extends DevstreamsError {
  readonly wsCode: number;
  constructor(wsCode: number, reason: string) {
    super(errorCodeOfClose(wsCode), reason || `stream closed with code ${wsCode}`);
    this.name = 'StreamClosedError';
    this.wsCode = wsCode;
  }
}

export function errorCodeOfClose(wsCode: number): ErrorCode {
  for (const [code, m] of Object.entries(ERRORS)) if (m.ws === wsCode) return code as ErrorCode;
  return 'PEER_GONE';
}

/**
 * A WebSocket as a Node Duplex with TCP semantics: backpressure both ways, half-close carried as an
 * EOF control frame. Pausing: when the reader falls behind, the WebSocket (and so its TCP socket) is
 * paused; when writing, the callback waits while more than `highWaterMark` bytes sit unsent.
 */
export class WsDuplex extends Duplex {
  bytesIn = 0;
  bytesOut = 0;
  private readonly ws: MessageSocket;
  private readonly highWaterMark: number;
  private paused = false;
  private eofSent = false;
  private eofReceived = false;

  constructor(ws: MessageSocket, highWaterMark: number = LIMITS.wsHighWaterMark) {
    // Received bytes the reader has not taken yet: at most READ_BUFFER_BYTES before the WebSocket
    // (and so its TCP socket) is paused, the rest waits in kernel buffers.
    super({ allowHalfOpen: true, readableHighWaterMark: Math.min(highWaterMark, READ_BUFFER_BYTES), writableHighWaterMark: 64 * 1024 });
    this.ws = ws;
    this.highWaterMark = highWaterMark;
    noReadAhead(this); // a push source: what Node's read-ahead would call _read for, it does itself
    ws.binaryType = 'fragments'; // a message in parts is pushed part by part (protocol/ws-zero-copy.ts)
    ws.on('message', (data: Buffer | Buffer[], isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', (code: number, reason: Buffer) => this.onClose(code, reason.toString()));
    ws.on('error', (err: Error) => this.destroy(err));
  }

  private onMessage(message: Buffer | Buffer[], isBinary: boolean): void {
    if (this.destroyed) return;
    if (isBinary) {
      if (this.eofReceived) return this.abort('BAD_REQUEST', 'data after EOF');
      let more = true;
      if (!Array.isArray(message) || message.length === 1) {
        const data = Array.isArray(message) ? message[0]! : message;
        this.bytesIn += data.length;
        more = this.push(data);
      } else {
        // A message in parts: a bridge joins them into one write (protocol/bridge.ts joinWrites).
        this.emit(MESSAGE_PARTS, true);
        try {
          for (const part of message) {
            this.bytesIn += part.length;
            more = this.push(part);
          }
        } finally {
          this.emit(MESSAGE_PARTS, false);
        }
      }
      if (!more && !this.paused) {
        this.paused = true;
        this.ws.pause();
      }
      return;
    }
    const data = joined(message);
    if (data.length > LIMITS.maxControlFrameBytes) return this.abort('PAYLOAD_TOO_LARGE', 'control frame too large');
    let msg: { type?: unknown };
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return this.abort('BAD_REQUEST', 'control frame is not JSON');
    }
    if (msg?.type === 'eof' && !this.eofReceived) {
      this.eofReceived = true;
      this.push(null);
      this.closeIfDone();
    }
    // Unknown control messages are ignored, so later versions can add some.
  }

  private onClose(code: number, reason: string): void {
    if (this.destroyed) return;
    if (code === 1000 && this.eofReceived && this.eofSent) return;
    this.destroy(new StreamClosedError(code, reason));
  }

  /**
   * Resolves once the WebSocket under this stream has closed: its close frame written and answered,
   * or the connection gone. A process that exits when its stream ends waits for this (bounded), or
   * its close frame may never leave and the hub sees 1006 instead of the code it was sent.
   */
  whenClosed(): Promise<void> {
    if (this.ws.readyState === this.ws.CLOSED) return Promise.resolve();
    return new Promise((resolve) => this.ws.once('close', () => resolve()));
  }

  /** Ends the stream abnormally: the peer sees `code` and `reason`. */
  abort(code: ErrorCode, reason: string): void {
    this.destroy(new DevstreamsError(code, reason));
  }

  override _read(): void {
    if (this.paused) {
      this.paused = false;
      this.ws.resume();
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) return cb(new DevstreamsError('PEER_GONE', 'stream is closed'));
    this.bytesOut += chunk.length;
    let called = false;
    this.ws.send(chunk, { binary: true }, (err) => {
      if (!called) {
        called = true;
        cb(err);
      } else if (err) this.destroy(err);
    });
    if (!called && this.ws.bufferedAmount < this.highWaterMark) {
      called = true;
      cb();
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) return cb(new DevstreamsError('PEER_GONE', 'stream is closed'));
    this.ws.send(EOF_FRAME, { binary: false }, (err) => {
      if (err) return cb(err);
      this.eofSent = true;
      this.closeIfDone();
      cb();
    });
  }

  private closeIfDone(): void {
    if (this.eofSent && this.eofReceived && this.ws.readyState === this.ws.OPEN) this.ws.close(1000);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const ws = this.ws;
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) {
      if (!err) ws.close(1000);
      else if (err instanceof StreamClosedError) ws.close(1000);
      else {
        const code: ErrorCode = err instanceof DevstreamsError ? err.code : 'PEER_GONE';
        ws.close(ERRORS[code].ws, truncateReason(err.message));
      }
    }
    if (this.paused) ws.resume();
    cb(err);
  }
}

/**
 * `generateMask` for the stream WebSockets a client dials (agent and SDK): an all-zero masking key,
 * with which ws sends the caller's buffer as it is instead of copying it into a masked one (RFC
 * 6455 5.3 lets the key be any value; XOR with zero leaves the payload unchanged). Masking exists so
 * that script in a browser cannot make a cleartext WebSocket look like other traffic to an
 * intermediary (RFC 6455 10.3); a stream WebSocket is always wss://, so no intermediary sees the
 * frames, and no untrusted script writes them. The relay still unmasks every frame as usual.
 */
export function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

/**
 * The ws options every stream WebSocket is dialled with, by the agent and by the SDK (their TLS
 * options are their own): the stream token as a bearer token, no compression (the payload is
 * usually encrypted already), the zero masking key, frames up to LIMITS.maxDataFrameBytes, no
 * redirects (a relay URL is followed exactly as the hub named it), and an upgrade deadline.
 */
export function streamDialOptions(token: string, handshakeTimeoutMs: number): ClientOptions {
  return {
    headers: { Authorization: `Bearer ${token}` },
    perMessageDeflate: false,
    generateMask: zeroMask,
    maxPayload: LIMITS.maxDataFrameBytes,
    handshakeTimeout: handshakeTimeoutMs,
    followRedirects: false,
  };
}

/** A close reason must fit in 123 bytes of UTF-8. */
export function truncateReason(reason: string): string {
  let r = reason;
  while (Buffer.byteLength(r) > 123) r = r.slice(0, -1);
  return r;
}
