/**
 * Buffers with room for a multiplexed frame's header in front of them (protocol/mux-frames.ts), so
 * that a channel sends their bytes without copying them into a new frame. Two kinds have it: the
 * bytes read at the edges (protocol/tcp-read-buffer.ts copies each read out of the shared buffer
 * into one made with the room), and a received DATA frame's payload, whose own header sits in front
 * of it (the relay forwards it to the other channel by rewriting that header in place). The room is
 * claimed once: a buffer sent twice (to two channels) is copied the second time.
 */
const WITH_ROOM = new WeakSet<Uint8Array>();

/** The room a buffer needs: a frame header (type and channel id). */
export const HEADROOM_BYTES = 5;

/** Bytes `n` long, with the room in front, marked as having it. */
export function allocWithHeadroom(n: number): Buffer {
  const b = Buffer.allocUnsafe(n + HEADROOM_BYTES).subarray(HEADROOM_BYTES);
  WITH_ROOM.add(b);
  return b;
}

/** Marks a view whose HEADROOM_BYTES in front belong to it alone (a received frame's header). */
export function markHeadroom(b: Buffer): Buffer {
  if (b.byteOffset >= HEADROOM_BYTES) WITH_ROOM.add(b);
  return b;
}

/** The view with the room in front, once per buffer; null when it has none (left). */
export function claimHeadroom(b: Buffer): Buffer | null {
  if (!WITH_ROOM.delete(b)) return null;
  return Buffer.from(b.buffer, b.byteOffset - HEADROOM_BYTES, b.length + HEADROOM_BYTES);
}
