import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WebSocket } from 'ws';
import { forward } from '../../hub/relay-pipe.js';
import type { Leg } from '../../hub/stream-table.js';
import { sendBinary, zeroMask, type MessageSocket } from '../../protocol/index.js';
import { closePairs, KiB, messages, pair, whole } from '../helpers/ws-pair.js';

// hub/relay-pipe.ts forward() between two per-stream WebSockets (plain ws:// on loopback here, where
// a message over 64 KiB arrives in several reads): a binary message goes on without being joined.
afterEach(async () => {
  vi.restoreAllMocks();
  await closePairs();
});

const leg = (ws: WebSocket): Leg => ({ role: 'service', ws: ws as unknown as MessageSocket, backpressured: false, closed: false });

describe('the relay between two per-stream WebSockets', () => {
  it('passes a message that spans several reads on as views into them, one frame, never joined', async () => {
    const from = await pair({}, { generateMask: zeroMask }); // a client of the hub, as connect and the agent are
    const to = await pair();
    forward(leg(from.sws), leg(to.sws), () => {});
    const seen = messages(from.sws); // what forward's listener was given
    const got = messages(to.cws);
    const concat = vi.spyOn(Buffer, 'concat');
    const payload = randomBytes(600 * KiB);
    from.cws.send(payload);
    const m = await got.next();
    const s = await seen.next();
    expect(concat).not.toHaveBeenCalled();
    concat.mockRestore();
    expect(Array.isArray(s.data) && s.data.length > 1).toBe(true); // ws alone joins the reads into one buffer
    expect(whole(m.data).equals(payload)).toBe(true);
  });
});

describe('sendBinary to a per-stream WebSocket', () => {
  it('writes parts as one frame without joining them', async () => {
    const { cws, sws } = await pair();
    const got = messages(cws);
    const parts = [randomBytes(70 * KiB), randomBytes(3), randomBytes(200 * KiB)];
    const concat = vi.spyOn(Buffer, 'concat');
    await new Promise<void>((resolve, reject) => sendBinary(sws as unknown as MessageSocket, parts, (err) => (err ? reject(err) : resolve())));
    expect(concat).not.toHaveBeenCalled();
    concat.mockRestore();
    const m = await got.next();
    expect(m.isBinary).toBe(true);
    expect(whole(m.data).equals(Buffer.concat(parts))).toBe(true);
  });

  it('joins them where the WebSocket cannot take a frame in parts now (closing), and reports the failure', async () => {
    const { sws } = await pair();
    sws.close();
    const err = await new Promise<Error | undefined>((resolve) => sendBinary(sws as unknown as MessageSocket, [Buffer.from('a'), Buffer.from('b')], resolve));
    expect(err).toBeInstanceOf(Error); // ws's own send on a closing socket
  });
});
