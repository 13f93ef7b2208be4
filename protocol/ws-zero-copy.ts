import type { WebSocket } from 'ws';
import { claimRoom } from './headroom.js';

/**
 * The two places the data path reaches under ws's hood (ws 8), each to drop a copy of every byte
 * carried on a multiplexed connection (docs/ARCHITECTURE.md "Multiplexed legs"; issue 6, sixteenth
 * round). Each checks for what it uses and, where it is missing, leaves ws to do as it does.
 *
 * Receiving: a TLS socket hands its reader at most 16 KiB at a time (one TLS record), so a 64 KiB
 * DATA frame arrives in four or five reads, and ws's Receiver copies them into one new buffer
 * before it emits the message. The hub then wrote that buffer into its other leg's TLS socket, which
 * copies again (Node's TLSWrap joins a batch of writes into one buffer for SSL_write), and the agent
 * wrote it into its target socket. With receiveAsViews, such a message arrives as views into the
 * reads, in order (binaryType 'fragments', ws's own way to deliver a Buffer[]); writeFrameParts
 * then hands the views to the socket as they are.
 *
 * Sending: ws writes a frame's header and its payload as two buffers, which Node's TLS socket joins
 * into a new one before it encrypts (TLSWrap::DoWrite), a copy of every byte the agent and
 * `devstreams forward` send. The bytes they read at the edges have room in front of them for both
 * headers (protocol/headroom.ts), and writeFrameInPlace writes the WebSocket header there: one buffer,
 * encrypted where it lies.
 */

/** What receiveAsViews reads and replaces of ws's Receiver. */
interface ReceiverInternals {
  _buffers: Buffer[];
  _bufferedBytes: number;
  _payloadLength: number;
  _totalPayloadLength: number;
  _messageLength: number;
  _opcode: number;
  _compressed: boolean;
  _masked: boolean;
  _mask: Buffer | undefined;
  _maxFragments: number;
  _numFragments: number;
  _fragments: Buffer[];
  getData(cb: (err?: Error) => void): void;
  dataMessage(cb: (err?: Error) => void): void;
}

const BINARY = 0x02;

/**
 * Sets `ws.binaryType` to 'fragments' and makes its receiver take the payload of a binary frame
 * that spans several reads as views into them, where ws would copy it. Only the plain case takes
 * the views: a binary frame that is not compressed, and unmasked or masked with the zero key (as the
 * agent and the SDK send, `zeroMask`). Every other frame, and every check (sizes, opcodes, UTF-8,
 * fragment counts), stays ws's. Returns false, with only binaryType set, when `ws` has no receiver
 * of the expected shape.
 */
export function receiveAsViews(ws: WebSocket): boolean {
  ws.binaryType = 'fragments';
  const r = (ws as unknown as { _receiver?: Partial<ReceiverInternals> })._receiver;
  if (!isReceiver(r)) return false;
  const getData = r.getData;
  r.getData = function (this: ReceiverInternals, cb: (err?: Error) => void): void {
    const n = this._payloadLength;
    if (!takesViews(this, n)) return getData.call(this, cb);
    if (this._maxFragments > 0) this._numFragments++;
    this._bufferedBytes -= n;
    for (let left = n; left > 0; ) {
      const b = this._buffers[0]!;
      if (b.length <= left) {
        this._fragments.push(this._buffers.shift()!);
        left -= b.length;
      } else {
        this._fragments.push(b.subarray(0, left));
        this._buffers[0] = b.subarray(left);
        left = 0;
      }
    }
    this._mask = undefined; // as ws: the mask is a view that would pin its read
    this._messageLength = this._totalPayloadLength;
    this.dataMessage(cb);
  };
  return true;
}

function isReceiver(r: Partial<ReceiverInternals> | undefined): r is ReceiverInternals {
  return (
    !!r && typeof r.getData === 'function' && typeof r.dataMessage === 'function' && Array.isArray(r._buffers) &&
    Array.isArray(r._fragments) && typeof r._bufferedBytes === 'number' && typeof r._maxFragments === 'number'
  );
}

/** True for a payload ws would copy and views can carry: whole, binary, plain, and in more than one read. */
function takesViews(r: ReceiverInternals, n: number): boolean {
  if (r._opcode !== BINARY || r._compressed || n === 0 || r._bufferedBytes < n || n <= r._buffers[0]!.length) return false;
  const m = r._mask;
  if (r._masked && (!m || (m[0]! | m[1]! | m[2]! | m[3]!) !== 0)) return false; // a real key: ws unmasks a copy
  return !(r._maxFragments > 0 && r._numFragments >= r._maxFragments); // over the limit: ws reports it
}

/** What writeFrameParts uses of a WebSocket: its socket, its side, and its sender's state. */
interface WebSocketInternals {
  _socket?: { cork(): void; uncork(): void; write(b: Buffer, cb?: (err?: Error) => void): boolean };
  _isServer?: boolean;
  _sender?: { _state?: number };
}

/**
 * Writes one final binary frame whose payload is `head` followed by `parts`, without joining them:
 * its header and `head` in one small buffer, then each part, corked, as ws writes a frame. A client
 * masks with the zero key (as `zeroMask`). Returns false, having written nothing, when ws could not
 * take it now in order (not open, or its sender is holding frames back) or has no socket of the
 * expected shape; the caller then sends the joined payload with `ws.send`.
 */
export function writeFrameParts(ws: WebSocket, head: Buffer, parts: Buffer[], cb?: (err?: Error) => void): boolean {
  const socket = writableSocket(ws);
  if (!socket) return false;
  let length = head.length;
  for (const p of parts) length += p.length;
  const masked = (ws as unknown as WebSocketInternals)._isServer !== true;
  const headerBytes = frameHeaderBytes(length, masked);
  const h = Buffer.allocUnsafe(headerBytes + head.length);
  writeFrameHeader(h, length, masked);
  head.copy(h, headerBytes);
  socket.cork();
  if (parts.length === 0) socket.write(h, cb);
  else socket.write(h);
  for (let i = 0; i < parts.length; i++) socket.write(parts[i]!, i === parts.length - 1 ? cb : undefined);
  socket.uncork();
  return true;
}

/**
 * Writes `payload` as one final binary frame whose header goes into the room in front of it
 * (protocol/headroom.ts: the bytes read at the edges have it), so the socket gets one buffer: a TLS
 * socket encrypts it where it lies, where a header and a payload in two buffers are first joined into
 * a new one (Node's TLSWrap::DoWrite), a copy of every byte. Returns false, having written nothing
 * and claimed no room, as writeFrameParts does, or when `payload` has no room for the header.
 */
export function writeFrameInPlace(ws: WebSocket, payload: Buffer, cb?: (err?: Error) => void): boolean {
  const socket = writableSocket(ws);
  if (!socket) return false;
  const masked = (ws as unknown as WebSocketInternals)._isServer !== true;
  const frame = claimRoom(payload, frameHeaderBytes(payload.length, masked));
  if (!frame) return false;
  writeFrameHeader(frame, payload.length, masked);
  socket.write(frame, cb);
  return true;
}

/** The socket of an open WebSocket whose sender holds nothing back, or null. */
function writableSocket(ws: WebSocket): NonNullable<WebSocketInternals['_socket']> | null {
  const w = ws as unknown as WebSocketInternals;
  const socket = w._socket;
  if (ws.readyState !== ws.OPEN || !socket || typeof socket.cork !== 'function' || w._sender?._state !== 0) return null;
  return socket;
}

/** RFC 6455 5.2: 2 bytes, a 16- or 64-bit extended length, and a client's masking key. */
function frameHeaderBytes(length: number, masked: boolean): number {
  return 2 + (length > 0xffff ? 8 : length > 125 ? 2 : 0) + (masked ? 4 : 0);
}

/** A final binary frame's header for a payload of `length` at the start of `h`; a client masks with the zero key (as `zeroMask`). */
function writeFrameHeader(h: Buffer, length: number, masked: boolean): void {
  h[0] = 0x80 | BINARY; // FIN, binary
  let at = 2;
  if (length > 0xffff) {
    h[1] = 127;
    h.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    h.writeUInt32BE(length >>> 0, 6);
    at = 10;
  } else if (length > 125) {
    h[1] = 126;
    h.writeUInt16BE(length, 2);
    at = 4;
  } else {
    h[1] = length;
  }
  if (masked) {
    h[1] |= 0x80;
    h.fill(0, at, at + 4); // the zero key: the payload goes as it is
  }
}
