import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';

/**
 * Loopback ports for programs that cannot report a port-0 bind (Mosquitto, sshd, a hub given its
 * listen address by `hub init`).
 *
 * Asking the kernel for a port-0 bind and closing it is not enough: the kernel may hand the same
 * number to the next caller, so a hub and its Mosquitto were once given one port (CI, 3 Dec 2026:
 * EADDRINUSE), and any outgoing connection on the machine may take it meanwhile. So each test
 * worker takes ports from a block of its own below the kernel's ephemeral range, which neither
 * port-0 binds nor outgoing connections use, hands out each number once, and probes it before
 * handing it out (a process of an earlier file may still hold it).
 */
const BLOCK = 1000;
const FIRST = 10_000;

function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

/** This worker's block [start, end), or null when the ephemeral range leaves no room below it. */
export function portBlock(pool = Number(process.env.VITEST_POOL_ID ?? 1), low = ephemeralLow()): [number, number] | null {
  const blocks = Math.floor((low - FIRST) / BLOCK);
  if (blocks < 1) return null;
  const start = FIRST + ((Math.max(1, pool) - 1) % blocks) * BLOCK;
  return [start, start + BLOCK];
}

const given = new Set<number>();
let cursor = -1;

async function canListen(port: number): Promise<boolean> {
  const srv = net.createServer();
  // events.once rejects on 'error', so the outcome is taken from plain listeners.
  const ok = await new Promise<boolean>((resolve) => {
    srv.once('listening', () => resolve(true));
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1');
  });
  if (ok) await new Promise<void>((r) => srv.close(() => r()));
  return ok;
}

async function kernelPort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A loopback port that was free a moment ago and that this process has not handed out before. */
export async function freePort(): Promise<number> {
  const block = portBlock();
  if (!block) {
    for (;;) {
      const p = await kernelPort();
      if (!given.has(p)) return given.add(p), p;
    }
  }
  const [start, end] = block;
  // A random first port, so that consecutive files of one worker do not start on the same numbers.
  if (cursor < 0) cursor = start + Math.floor(Math.random() * BLOCK);
  for (let tried = 0; tried < BLOCK; tried++) {
    const p = cursor;
    cursor = cursor + 1 >= end ? start : cursor + 1;
    if (given.has(p)) continue;
    given.add(p);
    if (await canListen(p)) return p;
  }
  throw new Error(`no free loopback port left in ${start}-${end - 1}`);
}
