import net from 'node:net';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { freePort, portBlock } from './ports.js';

describe('freePort (test/helpers/ports.ts)', () => {
  it('gives each worker a block of its own below the ephemeral range', () => {
    expect(portBlock(1, 32_768)).toEqual([10_000, 11_000]);
    expect(portBlock(2, 32_768)).toEqual([11_000, 12_000]);
    expect(portBlock(23, 32_768)).toEqual([10_000, 11_000]); // 22 blocks fit; the 23rd wraps
    expect(portBlock(1, 10_500)).toBeNull();
  });

  it('never hands out one number twice, and every number is below the ephemeral range', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 200; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
    const [start, end] = portBlock()!;
    for (const p of ports) expect(p >= start && p < end, String(p)).toBe(true);
  });

  it('skips a port something else holds', async () => {
    const next = await freePort();
    // Hold the number after it (or the block's first, if it wrapped); freePort must not return it.
    const [start, end] = portBlock()!;
    const held = next + 1 < end ? next + 1 : start;
    const srv = net.createServer().listen(held, '127.0.0.1');
    await once(srv, 'listening');
    try {
      expect(await freePort()).not.toBe(held);
    } finally {
      srv.close();
    }
  });
});
