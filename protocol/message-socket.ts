import type { WebSocket } from 'ws';
import { writeFrameParts } from './ws-zero-copy.js';

/**
 * What a stream leg is to the code that carries it (WsDuplex on the agent and in the SDK, the hub's
 * relay): the part of `ws`'s WebSocket they use. A per-stream WebSocket is one; a channel of a
 * multiplexed connection (protocol/mux-channel.ts) is another, with the same semantics: ordered
 * binary and text messages, pause and resume, a send callback once the bytes are written, a close
 * with a code and reason that the peer answers, and 'close' once both are done.
 */
export interface MessageSocket {
  readonly readyState: number;
  readonly CONNECTING: 0;
  readonly OPEN: 1;
  readonly CLOSING: 2;
  readonly CLOSED: 3;
  /** Bytes given to send() and not yet written out. */
  readonly bufferedAmount: number;
  readonly isPaused: boolean;
  /**
   * 'nodebuffer' (the default): a binary message arrives as one Buffer. 'fragments': as a Buffer[]
   * of its bytes in order, which a reader that can take them so (a socket's writes, a channel's
   * sendParts) takes without joining them (protocol/ws-zero-copy.ts). Text arrives as one Buffer.
   */
  binaryType: string;
  send(data: Buffer | string, options: { binary: boolean }, cb?: (err?: Error) => void): void;
  /** Sends one binary message made of `parts`, without joining them, where the socket can (a channel). */
  sendParts?(parts: Buffer[], cb?: (err?: Error) => void): void;
  pause(): void;
  resume(): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  on(event: 'message', listener: (data: Buffer | Buffer[], isBinary: boolean) => void): this;
  on(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  once(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  off(event: string, listener: (...args: any[]) => void): this;
}

/** A message's bytes as one Buffer, joined only if it came in parts. */
export function joined(data: Buffer | Buffer[]): Buffer {
  if (!Array.isArray(data)) return data;
  return data.length === 1 ? data[0]! : Buffer.concat(data);
}

/** The byte length of a message, one Buffer or parts. */
export function messageBytes(data: Buffer | Buffer[]): number {
  if (!Array.isArray(data)) return data.length;
  let n = 0;
  for (const d of data) n += d.length;
  return n;
}

const NO_HEAD = Buffer.alloc(0);

/**
 * Sends a binary message that may be in parts without joining them: to a channel as parts, to a
 * per-stream WebSocket as one frame written part by part (protocol/ws-zero-copy.ts writeFrameParts);
 * joined only where neither can take them now.
 */
export function sendBinary(dst: MessageSocket, data: Buffer | Buffer[], cb?: (err?: Error) => void): void {
  if (Array.isArray(data) && data.length > 1) {
    if (dst.sendParts) return dst.sendParts(data, cb);
    if (writeFrameParts(dst as unknown as WebSocket, NO_HEAD, data, cb)) return;
  }
  dst.send(joined(data), { binary: true }, cb);
}
