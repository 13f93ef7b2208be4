import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { noReadAhead } from '../../protocol/index.js';
import { ticksDuring } from '../helpers/streams.js';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('noReadAhead (protocol/read-ahead.ts)', () => {
  it("a push to a flowing stream schedules Node's read-ahead tick, and none once it is off", async () => {
    for (const off of [false, true]) {
      const r = new Readable({ read() {} });
      if (off) noReadAhead(r);
      const got: string[] = [];
      r.on('data', (c: Buffer) => got.push(c.toString()));
      await turn();
      const ticks = ticksDuring(() => {
        for (let i = 0; i < 5; i++) r.push(`m${i}`);
      });
      expect(ticks, off ? 'off' : 'on').toBe(off ? 0 : 1);
      expect(got).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
      await turn();
      // On, a tick is scheduled again after the last one ran: one per read in a real socket.
      expect(ticksDuring(() => r.push('again'))).toBe(off ? 0 : 1);
    }
  });

  it('a stream with a read-ahead tick pending is turned off once that tick has run', async () => {
    const r = new Readable({ read() {} });
    r.on('data', () => {});
    await turn();
    r.push('first'); // schedules the tick, which clears the mark when it runs
    noReadAhead(r);
    await turn();
    expect(ticksDuring(() => r.push('second'))).toBe(0);
  });

  it('a paused push source is still asked for more when its reader takes the buffer below the mark', async () => {
    let asked = 0;
    const r = new Readable({ highWaterMark: 4, read: () => void asked++ });
    noReadAhead(r);
    // Nobody reads: pushes fill the buffer, the last one says stop.
    expect(r.push('ab')).toBe(true);
    expect(r.push('cd')).toBe(false);
    const before = asked;
    expect(r.read()?.toString()).toBe('abcd');
    expect(asked).toBeGreaterThan(before);
  });
});
