import { HEADROOM_BYTES, claimHeadroom, markHeadroom } from './headroom.js';
import { LIMITS } from './limits.js';
import { PROTOCOL_VERSION } from './version.js';
import { truncateReason } from './ws-duplex.js';

/**
 * Multiplexed stream legs (docs/MULTIPLEXING.md): the agent keeps one WebSocket to the relay of
 * each hub node it has streams on, and each stream is a channel on it. Every WebSocket message on
 * that connection is binary and is one frame:
 *
 *   type (1 byte) | channel id (4 bytes, big-endian) | payload
 *
 *   ATTACH  client -> hub   JSON {"streamId", "token"}: join this stream with its single-use token
 *                           (the agent, on /api/v1/relay/device)
 *   OPEN    client -> hub   JSON {"device", "service", "timeoutMs"?}: open a stream and join it as
 *                           its service side (the SDK, on /api/v1/relay/service)
 *   ACCEPT  hub -> client   the stream id (or empty): the channel is the stream's leg from now on
 *   DATA    both ways       stream bytes (a binary frame of a per-stream WebSocket)
 *   TEXT    both ways       a stream control message (a text frame: today only {"type":"eof"})
 *   CLOSE   both ways       code (2 bytes) | reason (UTF-8): a per-stream WebSocket's close; answered
 *                           with a CLOSE; to an ATTACH or OPEN, the refusal. Code 1006 is an abort
 *                           (no answer)
 *   CREDIT  both ways       bytes (4 bytes): the sender may send that many more DATA bytes of the
 *                           channel (the receiver took them; with window updates, or grew its window)
 *
 * A sender starts with a grant of MUX_WINDOW_BYTES per channel, adds each CREDIT and takes off each
 * DATA byte, and sends while any grant is left (it may start one message past it), so a slow reader
 * stops only its own stream. Two subprotocols differ only in what a receiver may grant:
 * - `devstreams.v1.mux`: exactly what it took, so the window stays at MUX_WINDOW_BYTES;
 * - `devstreams.v1.mux2`: also more (a window update), growing a channel's window up to
 *   MUX_MAX_WINDOW_BYTES when the link needs it (protocol/mux-window.ts). One fixed window of
 *   1 MiB held a stream to 1 MiB per round trip: 18 MB/s over a 50 ms link.
 * A client offers both (MUX_SUBPROTOCOLS), the hub picks the newest it knows.
 */

export const MUX_SUBPROTOCOL = `devstreams.v${PROTOCOL_VERSION}.mux` as const;
/** The same framing, with window updates (see above). */
export const MUX_SUBPROTOCOL_WINDOWS = `devstreams.v${PROTOCOL_VERSION}.mux2` as const;
/** What a client offers, newest first. */
export const MUX_SUBPROTOCOLS: readonly string[] = Object.freeze([MUX_SUBPROTOCOL_WINDOWS, MUX_SUBPROTOCOL]);
/** Where an agent opens its multiplexed connection, on the origin of the relay URLs it is given. */
export const MUX_DEVICE_PATH = '/api/v1/relay/device' as const;
/** Where the SDK opens its multiplexed connection, on the hub's URL. */
export const MUX_SERVICE_PATH = '/api/v1/relay/service' as const;

/**
 * The multiplexed connection's URL for a stream's relay URL, and the stream's id: the same node
 * (scheme, host, port) and any path prefix before `/api/v1/streams/{id}/connect` (a hub behind a
 * reverse proxy under a path). Null when the URL is not a relay URL of that shape.
 */
export function muxDeviceUrl(relayUrl: string): { url: string; streamId: string } | null {
  let u: URL;
  try {
    u = new URL(relayUrl);
  } catch {
    return null;
  }
  const m = /^(.*)\/api\/v1\/streams\/([A-Za-z0-9_-]{22})\/connect$/.exec(u.pathname);
  if (!m) return null;
  return { url: `${u.protocol}//${u.host}${m[1]}${MUX_DEVICE_PATH}`, streamId: m[2]! };
}

export const MUX = Object.freeze({ ATTACH: 1, ACCEPT: 2, DATA: 3, TEXT: 4, CLOSE: 5, CREDIT: 6, OPEN: 7 } as const);
export type MuxType = (typeof MUX)[keyof typeof MUX];

export const MUX_HEADER_BYTES = HEADROOM_BYTES;
/** Per-channel flow-control window, each way, to start with: the per-stream WebSocket's high-water mark. */
export const MUX_WINDOW_BYTES = LIMITS.wsHighWaterMark;
/**
 * The most a channel's window grows to with window updates: 8 MiB carries about 160 MB/s over a
 * 50 ms round trip, near what a per-stream TCP connection's buffers (Linux's default tcp_rmem
 * maximum, 6 MiB) carried. It is also the most a paused channel can make its receiver hold.
 */
export const MUX_MAX_WINDOW_BYTES = 8 * 1024 * 1024;
/**
 * How far, all its channels together, a connection lets windows grow past MUX_WINDOW_BYTES: bounds
 * what one connection's paused channels can make its receiver hold to (channels x 1 MiB) + 16 MiB.
 */
export const MUX_WINDOW_GROWTH_PER_CONNECTION_BYTES = 16 * 1024 * 1024;
/** Largest WebSocket message on a multiplexed connection: a full data frame and its header. */
export const MUX_MAX_MESSAGE_BYTES = LIMITS.maxDataFrameBytes + MUX_HEADER_BYTES;
/** The CLOSE code that aborts a channel (a per-stream WebSocket's 1006: no close handshake). */
export const MUX_ABORT_CODE = 1006;
const MAX_REASON_BYTES = 123;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

export type MuxFrame =
  | { type: typeof MUX.ATTACH; id: number; streamId: string; token: string }
  | { type: typeof MUX.OPEN; id: number; body: unknown }
  | { type: typeof MUX.ACCEPT; id: number; streamId: string }
  | { type: typeof MUX.DATA; id: number; data: Buffer }
  | { type: typeof MUX.TEXT; id: number; data: Buffer }
  | { type: typeof MUX.CLOSE; id: number; code: number; reason: string }
  | { type: typeof MUX.CREDIT; id: number; bytes: number };

/** A frame with `payloadBytes` bytes of payload to follow; the caller fills them in from MUX_HEADER_BYTES. */
function frame(type: MuxType, id: number, payloadBytes: number): Buffer {
  const b = Buffer.allocUnsafe(MUX_HEADER_BYTES + payloadBytes);
  b[0] = type;
  b.writeUInt32BE(id, 1);
  return b;
}

export function encodeData(type: typeof MUX.DATA | typeof MUX.TEXT | typeof MUX.ATTACH | typeof MUX.OPEN | typeof MUX.ACCEPT, id: number, data: Buffer): Buffer {
  // Bytes read at the edges, or a received payload being forwarded: the header goes in front of
  // them, in place, instead of copying them (protocol/headroom.ts).
  const inPlace = claimHeadroom(data);
  if (inPlace) {
    inPlace[0] = type;
    inPlace.writeUInt32BE(id, 1);
    return inPlace;
  }
  const b = frame(type, id, data.length);
  data.copy(b, MUX_HEADER_BYTES);
  return b;
}

export function encodeAttach(id: number, streamId: string, token: string): Buffer {
  return encodeData(MUX.ATTACH, id, Buffer.from(JSON.stringify({ streamId, token })));
}

export function encodeOpen(id: number, body: { device: string; service: string; timeoutMs?: number }): Buffer {
  return encodeData(MUX.OPEN, id, Buffer.from(JSON.stringify(body)));
}

export function encodeAccept(id: number, streamId = ''): Buffer {
  return encodeData(MUX.ACCEPT, id, Buffer.from(streamId));
}

export function encodeClose(id: number, code: number, reason: string): Buffer {
  const r = Buffer.from(truncateReason(reason)); // at most MAX_REASON_BYTES, as a WebSocket's close
  const b = frame(MUX.CLOSE, id, 2 + r.length);
  b.writeUInt16BE(code, MUX_HEADER_BYTES);
  r.copy(b, MUX_HEADER_BYTES + 2);
  return b;
}

export function encodeCredit(id: number, bytes: number): Buffer {
  const b = frame(MUX.CREDIT, id, 4);
  b.writeUInt32BE(bytes, MUX_HEADER_BYTES);
  return b;
}

/**
 * Decodes a message that arrived in parts (protocol/ws-zero-copy.ts) when it is a DATA frame whose
 * first part holds the header: its payload as views into the parts. A string names what is wrong;
 * null: not such a frame (the caller joins the parts and decodes them with decodeMuxFrame).
 */
export function decodeDataParts(parts: Buffer[]): { id: number; data: Buffer[] } | string | null {
  const first = parts[0];
  if (!first || first.length < MUX_HEADER_BYTES || first[0] !== MUX.DATA) return null;
  const data = first.length > MUX_HEADER_BYTES ? [first.subarray(MUX_HEADER_BYTES), ...parts.slice(1)] : parts.slice(1);
  let bytes = 0;
  for (const d of data) bytes += d.length;
  if (bytes > LIMITS.maxDataFrameBytes) return `DATA frame of ${bytes} bytes is over the limit`;
  return { id: first.readUInt32BE(1), data };
}

/**
 * Decodes one message of a multiplexed connection; a string names what is wrong with it. Payloads
 * are views into `msg`, not copies.
 */
export function decodeMuxFrame(msg: Buffer): MuxFrame | string {
  if (msg.length < MUX_HEADER_BYTES) return `frame of ${msg.length} bytes is shorter than its header`;
  const type = msg[0]!;
  const id = msg.readUInt32BE(1);
  const payload = msg.subarray(MUX_HEADER_BYTES);
  switch (type) {
    case MUX.DATA:
      if (payload.length > LIMITS.maxDataFrameBytes) return `DATA frame of ${payload.length} bytes is over the limit`;
      return { type, id, data: markHeadroom(payload) }; // its header in front is ours to rewrite
    case MUX.TEXT:
      if (payload.length > LIMITS.maxControlFrameBytes) return `TEXT frame of ${payload.length} bytes is over the limit`;
      return { type, id, data: payload };
    case MUX.CREDIT:
      if (payload.length !== 4) return 'CREDIT frame must carry 4 bytes';
      return { type, id, bytes: payload.readUInt32BE(0) };
    case MUX.ACCEPT: {
      const streamId = payload.toString('latin1');
      if (!/^[A-Za-z0-9_-]{0,64}$/.test(streamId)) return 'ACCEPT frame must carry a stream id or nothing';
      return { type, id, streamId };
    }
    case MUX.OPEN: {
      if (payload.length > LIMITS.maxControlFrameBytes) return 'OPEN frame is over the limit';
      try {
        return { type, id, body: JSON.parse(payload.toString('utf8')) as unknown };
      } catch {
        return 'OPEN payload is not JSON';
      }
    }
    case MUX.CLOSE: {
      if (payload.length < 2 || payload.length > 2 + MAX_REASON_BYTES) return 'CLOSE frame must carry a code and at most 123 bytes of reason';
      try {
        return { type, id, code: payload.readUInt16BE(0), reason: UTF8.decode(payload.subarray(2)) };
      } catch {
        return 'CLOSE reason is not UTF-8';
      }
    }
    case MUX.ATTACH: {
      if (payload.length > LIMITS.maxControlFrameBytes) return 'ATTACH frame is over the limit';
      let body: unknown;
      try {
        body = JSON.parse(payload.toString('utf8'));
      } catch {
        return 'ATTACH payload is not JSON';
      }
      const { streamId, token } = (body ?? {}) as { streamId?: unknown; token?: unknown };
      if (typeof streamId !== 'string' || typeof token !== 'string') return 'ATTACH payload must have string streamId and token';
      return { type, id, streamId, token };
    }
    default:
      return `unknown frame type ${type}`;
  }
}
