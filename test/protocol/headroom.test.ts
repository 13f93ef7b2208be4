import { describe, expect, it } from 'vitest';
import { MUX, WS_HEADROOM_BYTES, allocWithHeadroom, claimHeadroom, claimRoom, decodeMuxFrame, encodeData } from '../../protocol/index.js';

/** Frames built in place in front of their bytes (protocol/headroom.ts), and only where that is safe. */
/** True when `frame`'s payload is `payload`'s own memory (no copy). */
function sharesMemory(frame: Buffer, payload: Buffer): boolean {
  return frame.buffer === payload.buffer && frame.byteOffset + 5 === payload.byteOffset;
}

describe('headroom', () => {
  it('a buffer with room gets its frame header in place, once: the frame shares its bytes, a second frame copies', () => {
    const b = allocWithHeadroom(4);
    b.write('abcd');
    const f1 = encodeData(MUX.DATA, 7, b);
    expect(sharesMemory(f1, b)).toBe(true);
    const f2 = encodeData(MUX.DATA, 9, b); // sent again, on another channel
    expect(sharesMemory(f2, b)).toBe(false);
    // Both frames say what they should: the second did not overwrite the first's header.
    expect(decodeMuxFrame(f1)).toMatchObject({ type: MUX.DATA, id: 7, data: Buffer.from('abcd') });
    expect(decodeMuxFrame(f2)).toMatchObject({ type: MUX.DATA, id: 9, data: Buffer.from('abcd') });
  });

  it("a received payload is forwarded by rewriting its own header, without touching the message's other bytes", () => {
    const two = Buffer.concat([encodeData(MUX.DATA, 1, Buffer.from('first')), encodeData(MUX.DATA, 2, Buffer.from('second'))]);
    const a = decodeMuxFrame(two.subarray(0, 10));
    const b = decodeMuxFrame(two.subarray(10));
    if (typeof a === 'string' || typeof b === 'string' || a.type !== MUX.DATA || b.type !== MUX.DATA) throw new Error('decode failed');
    const out = encodeData(MUX.DATA, 42, a.data);
    expect(sharesMemory(out, a.data)).toBe(true);
    expect(decodeMuxFrame(out)).toMatchObject({ id: 42, data: Buffer.from('first') });
    expect(decodeMuxFrame(two.subarray(10))).toMatchObject({ id: 2, data: Buffer.from('second') });
  });

  it('a buffer without room (a caller\'s, or a view of one) is copied, and left as it was', () => {
    const mine = Buffer.from('0123456789');
    const view = mine.subarray(5);
    const f = encodeData(MUX.DATA, 3, view);
    expect(sharesMemory(f, view)).toBe(false);
    expect(mine.toString()).toBe('0123456789');
    expect(claimHeadroom(Buffer.from('x'))).toBeNull();
  });

  it('bytes read at the edges have room for both headers, each claimed once, outermost last', () => {
    const b = allocWithHeadroom(4);
    b.write('wxyz');
    const f = encodeData(MUX.DATA, 5, b);
    expect(sharesMemory(f, b)).toBe(true);
    expect(claimRoom(f, WS_HEADROOM_BYTES + 1)).toBeNull(); // more than there is: left as it was
    const ws = claimRoom(f, 6);
    expect(ws?.buffer).toBe(b.buffer);
    expect(ws!.byteOffset).toBe(f.byteOffset - 6);
    expect(ws!.subarray(6).equals(f)).toBe(true);
    expect(claimRoom(f, 6)).toBeNull(); // claimed: a second frame of it is copied
    expect(claimRoom(ws!, WS_HEADROOM_BYTES - 6)).not.toBeNull(); // what was left stays with the longer view
  });

  it('a received payload has room for its multiplexed header only', () => {
    const msg = encodeData(MUX.DATA, 1, Buffer.from('payload'));
    const d = decodeMuxFrame(msg);
    if (typeof d === 'string' || d.type !== MUX.DATA) throw new Error('decode failed');
    const f = encodeData(MUX.DATA, 2, d.data);
    expect(sharesMemory(f, d.data)).toBe(true);
    expect(claimRoom(f, 1)).toBeNull(); // the bytes in front of its header are not its own
  });
});
