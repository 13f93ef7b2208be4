import { EventEmitter } from 'node:events';
import { DevstreamsError, ERRORS } from './errors.js';
import { LIMITS } from './limits.js';
import { joined, messageBytes, type MessageSocket } from './message-socket.js';
import { MUX, MUX_ABORT_CODE, MUX_HEADER_BYTES, MUX_MAX_WINDOW_BYTES, MUX_WINDOW_BYTES, encodeAccept, encodeClose, encodeCredit, encodeData } from './mux-frames.js';

/** What a channel needs of its connection. */
export interface ChannelLink {
  /** Sends one frame on the connection; `cb` once it is written out (or failed). */
  write(frame: Buffer, cb?: (err?: Error) => void): void;
  /** Sends one frame made of `head` (a header) and `parts`, without joining them. */
  writeParts(head: Buffer, parts: Buffer[], cb?: (err?: Error) => void): void;
  /** The channel has closed both ways: its id is free (and the window it grew, `grownBytes`, is given back). */
  release(id: number): void;
  /**
   * True on a connection whose peer takes CREDIT as a window update (subprotocol
   * devstreams.v1.mux2): this side may grant more than it consumed, and may be granted more.
   */
  readonly windowUpdates: boolean;
}

/** A frame to send: `frame` whole, or with `parts` the frame's header, its payload in parts. */
type Outgoing = { kind: 'data' | 'text' | 'close'; frame: Buffer; parts?: Buffer[]; bytes: number; cb: ((err?: Error) => void) | undefined };
type Incoming = { kind: 'message'; data: Buffer | Buffer[]; bytes: number; isBinary: boolean } | { kind: 'close'; code: number; reason: string };

/** A peer that never answers a CLOSE: the channel is given up after this long (ws waits 30 s). */
const CLOSE_TIMEOUT_MS = 30_000;
/** Text messages a paused channel holds before it treats its peer as misbehaving. */
const MAX_HELD_TEXT = 16;

/**
 * One stream on a multiplexed connection, with the semantics of a per-stream WebSocket
 * (protocol/message-socket.ts): WsDuplex and the relay carry it unchanged. Flow control is per
 * channel: DATA is sent while the peer's grant (`allowance`: MUX_WINDOW_BYTES to start with, plus
 * every CREDIT, minus every DATA byte) lasts, the rest waits here (counted in `bufferedAmount`), and
 * received bytes are acknowledged (CREDIT) as they are emitted, so a paused channel stops its
 * sender within a window without holding up the connection's other channels. On a connection with
 * window updates the receive window may grow (grow(), decided by the connection), up to
 * MUX_MAX_WINDOW_BYTES. Text and CLOSE frames keep their place behind waiting data.
 */
export class MuxChannel extends EventEmitter implements MessageSocket {
  readonly CONNECTING = 0 as const;
  readonly OPEN = 1 as const;
  readonly CLOSING = 2 as const;
  readonly CLOSED = 3 as const;
  readonly id: number;
  binaryType = 'nodebuffer';
  private state: 0 | 1 | 2 | 3 = 0;
  private paused = false;
  private readonly link: ChannelLink;
  /** DATA bytes the peer lets this side send now (it may start one frame while any is left). */
  private allowance = MUX_WINDOW_BYTES;
  private readonly outbox: Outgoing[] = [];
  private queuedBytes = 0;
  /** DATA bytes handed to the connection whose write has not completed. */
  private unflushed = 0;
  private readonly inbox: Incoming[] = [];
  private heldText = 0;
  private draining = false;
  /** DATA bytes the peer may still send (this side's grant, less what arrived); emitted and not yet acknowledged. */
  private allowanceIn = MUX_WINDOW_BYTES;
  private consumed = 0;
  /** The receive window: what this side lets the peer have unacknowledged; grows with grow(). */
  private window = MUX_WINDOW_BYTES;
  /** DATA bytes received in all; the connection's window sampling reads it. */
  receivedBytes = 0;
  /** `receivedBytes` when the connection last sampled this channel. */
  sampledUpTo = 0;
  private closeSent = false;
  private closeWritten = false;
  private closeReceived: { code: number; reason: string } | null = null;
  private closeTimer: NodeJS.Timeout | null = null;

  constructor(link: ChannelLink, id: number) {
    super();
    this.link = link;
    this.id = id;
  }

  get readyState(): number {
    return this.state;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  get bufferedAmount(): number {
    return this.queuedBytes + this.unflushed;
  }

  /** The receive window now (MUX_WINDOW_BYTES until it grows). */
  get receiveWindow(): number {
    return this.window;
  }

  /** How far the receive window has grown past MUX_WINDOW_BYTES: given back to the connection's budget on release. */
  get grownBytes(): number {
    return this.window - MUX_WINDOW_BYTES;
  }

  /**
   * True while the receive window may still grow: the channel is open, below MUX_MAX_WINDOW_BYTES,
   * and not paused (a paused channel takes nothing: bytes that arrive while it is paused, such as
   * its first window in one burst, are no sign that its window holds it back).
   */
  get canGrow(): boolean {
    return this.state === 1 && !this.closeReceived && !this.paused && this.window < MUX_MAX_WINDOW_BYTES;
  }

  /**
   * Grows the receive window by `extra` bytes and grants them to the peer at once (a CREDIT for
   * more than was consumed): only on a connection with window updates. Returns the bytes it grew by.
   */
  grow(extra: number): number {
    if (!this.link.windowUpdates || !this.canGrow || extra <= 0) return 0;
    const by = Math.min(extra, MUX_MAX_WINDOW_BYTES - this.window);
    this.window += by;
    this.allowanceIn += by;
    this.link.write(encodeCredit(this.id, by));
    return by;
  }

  /** Hub side: the ATTACH or OPEN was accepted (for `streamId`); the channel is open. */
  accept(streamId?: string): void {
    if (this.state !== 0) return;
    this.state = 1;
    this.link.write(encodeAccept(this.id, streamId));
  }

  /** Hub side: the ATTACH was refused with this close code; the channel is gone. */
  refuse(code: number, reason: string): void {
    if (this.state === 3) return;
    this.link.write(encodeClose(this.id, code, reason));
    this.finish(code, reason);
  }

  /** Client side: the hub accepted the ATTACH. */
  opened(): void {
    if (this.state === 0) this.state = 1;
  }

  send(data: Buffer | string, options: { binary: boolean }, cb?: (err?: Error) => void): void {
    if (this.state !== 1) {
      if (cb) process.nextTick(cb, new DevstreamsError('PEER_GONE', 'stream is closed'));
      return;
    }
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    if (!options.binary) {
      if (buf.length > LIMITS.maxControlFrameBytes) {
        // The peer would take the TEXT frame for a malformed connection and end all its channels;
        // a per-stream peer ends just this stream with 1009 (WsDuplex), and so does this.
        this.close(ERRORS.PAYLOAD_TOO_LARGE.ws, 'control message too large');
        if (cb) process.nextTick(cb, new DevstreamsError('PAYLOAD_TOO_LARGE', 'control message too large'));
        return;
      }
      return this.enqueue({ kind: 'text', frame: encodeData(MUX.TEXT, this.id, buf), bytes: 0, cb });
    }
    // A DATA frame carries at most LIMITS.maxDataFrameBytes (the peer takes a larger one for a
    // malformed connection): a larger message goes as several, with `cb` on the last.
    let off = 0;
    for (; buf.length - off > LIMITS.maxDataFrameBytes; off += LIMITS.maxDataFrameBytes) {
      const part = buf.subarray(off, off + LIMITS.maxDataFrameBytes);
      this.enqueue({ kind: 'data', frame: encodeData(MUX.DATA, this.id, part), bytes: part.length, cb: undefined });
    }
    const last = off === 0 ? buf : buf.subarray(off); // the buffer itself: it may have room for the header
    this.enqueue({ kind: 'data', frame: encodeData(MUX.DATA, this.id, last), bytes: last.length, cb });
  }

  /**
   * Sends one binary message made of `parts` (a payload that arrived in parts, being forwarded) as
   * one DATA frame, without joining them; a message over LIMITS.maxDataFrameBytes goes as send().
   */
  sendParts(parts: Buffer[], cb?: (err?: Error) => void): void {
    const bytes = messageBytes(parts);
    if (this.state !== 1 || bytes > LIMITS.maxDataFrameBytes) return this.send(joined(parts), { binary: true }, cb);
    const head = Buffer.allocUnsafe(MUX_HEADER_BYTES);
    head[0] = MUX.DATA;
    head.writeUInt32BE(this.id, 1);
    this.enqueue({ kind: 'data', frame: head, parts, bytes, cb });
  }

  close(code?: number, reason = ''): void {
    if (this.state === 3 || this.closeSent) return;
    if (this.state === 0) return this.terminate();
    this.state = 2;
    this.closeSent = true;
    this.enqueue({ kind: 'close', frame: encodeClose(this.id, code ?? 1005, reason), bytes: 0, cb: undefined });
    this.closeTimer ??= setTimeout(() => this.terminate(), CLOSE_TIMEOUT_MS).unref();
  }

  /** Ends the channel at once: the peer sees 1006, as if the connection had been lost. */
  terminate(): void {
    if (this.state === 3) return;
    this.link.write(encodeClose(this.id, MUX_ABORT_CODE, ''));
    this.finish(MUX_ABORT_CODE, '');
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    if (this.inbox.length > 0 && !this.draining) {
      this.draining = true;
      process.nextTick(() => this.drainInbox());
    }
  }

  /** A frame for this channel arrived (the connection decoded it); a DATA payload may be in parts. */
  receive(kind: 'data' | 'text', data: Buffer | Buffer[]): void {
    if (this.state === 3 || this.closeReceived) return;
    const bytes = messageBytes(data);
    if (kind === 'data') {
      this.allowanceIn -= bytes;
      this.receivedBytes += bytes;
      // The sender may start one frame while any grant is left: anything past that breaks flow control.
      if (this.allowanceIn < -LIMITS.maxDataFrameBytes) return this.fail('flow-control window exceeded');
    } else if (this.paused && ++this.heldText > MAX_HELD_TEXT) {
      return this.fail('too many control messages held');
    }
    this.deliver({ kind: 'message', data, bytes, isBinary: kind === 'data' });
  }

  /**
   * The peer granted `bytes` more: it took that many of our DATA bytes, and on a connection with
   * window updates it may also have grown its window. A grant past what the window allows (the
   * fixed window without window updates) breaks flow control.
   */
  credit(bytes: number): void {
    if (this.state === 3) return;
    const max = this.link.windowUpdates ? MUX_MAX_WINDOW_BYTES : MUX_WINDOW_BYTES;
    if (this.allowance + bytes > max) return this.fail('credit for more bytes than were sent');
    this.allowance += bytes;
    this.flushOutbox();
  }

  /** The peer closed (or refused, or aborted) the channel. */
  peerClosed(code: number, reason: string): void {
    if (this.state === 3) return;
    if (code === MUX_ABORT_CODE) return this.finish(MUX_ABORT_CODE, '');
    if (this.state === 0) return this.finish(code, reason); // a refused ATTACH: no answer
    if (this.closeReceived) return;
    this.deliver({ kind: 'close', code, reason });
  }

  /** The connection is gone: the channel ends as a per-stream WebSocket whose TCP connection dropped. */
  lost(code = MUX_ABORT_CODE, reason = ''): void {
    this.finish(code, reason);
  }

  private enqueue(out: Outgoing): void {
    this.outbox.push(out);
    this.queuedBytes += out.bytes;
    this.flushOutbox();
  }

  private flushOutbox(): void {
    while (this.outbox.length > 0 && this.state !== 3) {
      const out = this.outbox[0]!;
      if (out.kind === 'data' && this.allowance <= 0) return;
      this.outbox.shift();
      this.queuedBytes -= out.bytes;
      if (out.kind === 'close') {
        this.closeWritten = true;
        this.link.write(out.frame);
        this.finishIfClosed();
        continue;
      }
      this.allowance -= out.bytes;
      this.unflushed += out.bytes;
      const cb = out.cb;
      const bytes = out.bytes;
      const written = (err?: Error): void => {
        this.unflushed -= bytes;
        cb?.(err);
      };
      if (out.parts) this.link.writeParts(out.frame, out.parts, written);
      else this.link.write(out.frame, written);
    }
  }

  private deliver(item: Incoming): void {
    if (this.paused || this.inbox.length > 0) {
      this.inbox.push(item);
      return;
    }
    this.emitIncoming(item);
  }

  private drainInbox(): void {
    this.draining = false;
    while (!this.paused && this.inbox.length > 0 && this.state !== 3) this.emitIncoming(this.inbox.shift()!);
  }

  private emitIncoming(item: Incoming): void {
    if (item.kind === 'close') {
      this.closeReceived = { code: item.code, reason: item.reason };
      if (!this.closeSent) {
        // Answered as ws answers a close: the same code, after whatever this side still has queued.
        this.state = 2;
        this.closeSent = true;
        // The answer may wait behind data the peer never credits (a peer that gave up without a
        // handshake): given up after the close timeout, as ws does and as close() does.
        this.closeTimer ??= setTimeout(() => this.terminate(), CLOSE_TIMEOUT_MS).unref();
        this.enqueue({ kind: 'close', frame: encodeClose(this.id, item.code, ''), bytes: 0, cb: undefined });
      }
      this.finishIfClosed();
      return;
    }
    if (item.isBinary) {
      this.consumed += item.bytes;
      if (this.consumed >= this.window / 4) {
        this.link.write(encodeCredit(this.id, this.consumed));
        this.allowanceIn += this.consumed;
        this.consumed = 0;
      }
    } else if (this.heldText > 0) {
      this.heldText--;
    }
    // As ws delivers: parts to a 'fragments' reader, one Buffer otherwise (and always for text).
    const fragments = this.binaryType === 'fragments' && item.isBinary;
    this.emit('message', fragments ? (Array.isArray(item.data) ? item.data : [item.data]) : joined(item.data), item.isBinary);
  }

  private finishIfClosed(): void {
    if (this.closeWritten && this.closeReceived) this.finish(this.closeReceived.code, this.closeReceived.reason);
  }

  private fail(reason: string): void {
    this.link.write(encodeClose(this.id, ERRORS.BAD_REQUEST.ws, reason));
    this.finish(ERRORS.BAD_REQUEST.ws, reason);
  }

  private finish(code: number, reason: string): void {
    if (this.state === 3) return;
    this.state = 3;
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.inbox.length = 0;
    const dropped = this.outbox.splice(0);
    this.queuedBytes = 0;
    this.link.release(this.id);
    const err = new DevstreamsError('PEER_GONE', 'stream is closed');
    for (const out of dropped) out.cb?.(err);
    // Later, as ws emits it: callers close a leg and go on before they hear of it.
    process.nextTick(() => this.emit('close', code, Buffer.from(reason)));
  }
}
