import type { WebSocket } from 'ws';
import { LIMITS, joined, messageBytes, receiveAsViews, sendBinary } from '../protocol/index.js';
import type { Leg } from './stream-table.js';

/**
 * Forwarding between the two legs of a paired stream: frames as they come (binary as binary, text
 * as text), with backpressure: when the destination has more than LIMITS.wsHighWaterMark unsent,
 * the source WebSocket (and so its TCP socket) is paused until the destination drains. A binary
 * message that arrived in parts (a channel's DATA frame in several reads, or a per-stream
 * WebSocket's frame, taken as views into its reads) goes on in parts, to a channel or as one frame
 * to a per-stream WebSocket, never joined (protocol/ws-zero-copy.ts).
 */
export function forward(src: Leg, dst: Leg, countBinary: (bytes: number) => void): void {
  receiveAsViews(src.ws as unknown as WebSocket); // a channel: 'fragments' alone (its DATA frames arrive in parts already)
  src.ws.on('message', (data: Buffer | Buffer[], isBinary: boolean) => {
    if (dst.closed || dst.ws.readyState !== dst.ws.OPEN) return; // the stream is ending
    const written = (): void => {
      if (src.backpressured && dst.ws.bufferedAmount <= LIMITS.wsHighWaterMark) {
        src.backpressured = false;
        if (!src.closed) src.ws.resume();
      }
    };
    if (isBinary) {
      countBinary(messageBytes(data));
      sendBinary(dst.ws, data, written);
    } else {
      dst.ws.send(joined(data), { binary: false }, written);
    }
    if (!src.backpressured && dst.ws.bufferedAmount > LIMITS.wsHighWaterMark) {
      src.backpressured = true;
      src.ws.pause();
    }
  });
}

/** Close codes a peer may send (RFC 6455 7.4): 1005, 1006 and 1015 are only ever reported locally. */
export function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** The close to pass on to the other side for a close seen on one side. */
export function closeToForward(code: number, reason: string): { code: number; reason: string } {
  if (isSendableCloseCode(code)) return { code, reason };
  if (code === 1005) return { code: 1000, reason: '' }; // closed without a status code
  return { code: 4502, reason: 'peer connection lost' }; // PEER_GONE
}

/** Closes a leg (resuming it first, so its closing handshake can complete). */
export function closeLeg(leg: Leg, code: number, reason: string): void {
  if (leg.closed) return;
  const ws = leg.ws;
  if (ws.isPaused) ws.resume();
  if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
}
