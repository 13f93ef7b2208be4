/**
 * Buffers with room for headers in front of them, so that their bytes are sent without being copied
 * into a new frame. Two kinds have it:
 * - the bytes read at the edges (protocol/tcp-read-buffer.ts copies each read out of the shared
 *   buffer into one made with the room, or reads a bulk transfer into such a buffer): room for a
 *   multiplexed frame's header (protocol/mux-frames.ts) and, in front of that, for the WebSocket
 *   frame's header that carries it (protocol/ws-zero-copy.ts writeFrameInPlace), so the whole frame
 *   goes to the TLS socket as one buffer, which Node encrypts where it lies; given a batch of
 *   buffers, Node's TLS socket joins them into a new one first, a copy of every byte;
 * - a received DATA frame's payload, whose own multiplexed header sits in front of it (the relay
 *   forwards it to the other channel by rewriting that header in place).
 * The room is claimed once: a buffer sent twice (to two channels) is copied the second time.
 */
const ROOM = new WeakMap<Uint8Array, number>();

/** The room a multiplexed frame needs: its header (type and channel id). */
export const HEADROOM_BYTES = 5;
/** The room a WebSocket frame's header needs at most: 2 bytes, an 8-byte length and a 4-byte mask. */
export const WS_HEADROOM_BYTES = 14;

/** Bytes `n` long, with room in front for both headers, marked as having it. */
export function allocWithHeadroom(n: number): Buffer {
  const room = HEADROOM_BYTES + WS_HEADROOM_BYTES;
  const b = Buffer.allocUnsafe(n + room).subarray(room);
  ROOM.set(b, room);
  return b;
}

/** Marks a view whose HEADROOM_BYTES in front belong to it alone (a received frame's header). */
export function markHeadroom(b: Buffer): Buffer {
  if (b.byteOffset >= HEADROOM_BYTES) ROOM.set(b, HEADROOM_BYTES);
  return b;
}

/** The view with a multiplexed header's room in front, once per buffer; null when it has none (left). */
export function claimHeadroom(b: Buffer): Buffer | null {
  return claimRoom(b, HEADROOM_BYTES);
}

/**
 * The view extended by `n` bytes in front, when `b` has that much room; what room is left in front
 * of the extended view stays its own. Null, and `b` left as it was, when it has less.
 */
export function claimRoom(b: Buffer, n: number): Buffer | null {
  const room = ROOM.get(b);
  if (room === undefined || room < n) return null;
  ROOM.delete(b);
  const extended = Buffer.from(b.buffer, b.byteOffset - n, b.length + n);
  if (room > n) ROOM.set(extended, room - n);
  return extended;
}

/**
 * The first `n` bytes of `b`, given the room `b` has in front (`b` keeps none): a buffer made by
 * allocWithHeadroom that a read filled only in part (protocol/tcp-read-buffer.ts).
 */
export function headroomView(b: Buffer, n: number): Buffer {
  const v = b.subarray(0, n);
  const room = ROOM.get(b);
  if (room !== undefined) {
    ROOM.delete(b);
    ROOM.set(v, room);
  }
  return v;
}
