import type { Readable } from 'node:stream';

/**
 * Turns off Node's read-ahead on a stream's readable side, where it has nothing to do.
 *
 * After a push, a Readable schedules a `process.nextTick` (maybeReadMore) that calls `read(0)`
 * while it holds less than its high-water mark, so that a pull source reads ahead. The data path's
 * readables are push sources: a WsDuplex pushes each message as it arrives, and a socket pushes
 * each read while its handle reads. Each stops only when a push finds its buffer full (a WsDuplex
 * pauses its WebSocket, a socket stops its handle), and after that every read() that takes the
 * buffer below the mark starts it again by itself. So the tick finds nothing to do, once per
 * message or read. It is not free: in the agent, where Maglev is the only optimizing compiler
 * (protocol/compiler-tiers.ts), `process.nextTick` builds its tick object through a V8 runtime
 * call; in `node bench/ping-pong.mjs` these ticks took 11.7 % of the agent's CPU (`perf`, issue 6,
 * twenty-seventh round).
 *
 * Marking the state as reading ahead already (`readingMore`, a property of ReadableState in Node
 * 20 to 24, read nowhere but in maybeReadMore) keeps the tick from being scheduled. A tick already
 * scheduled clears the mark when it runs, so then the mark is set once the ticks have run. Where the
 * property is missing, nothing changes.
 */
export function noReadAhead(stream: Readable): void {
  const state = (stream as unknown as { _readableState?: { readingMore?: unknown } })._readableState;
  if (!state || typeof state.readingMore !== 'boolean') return;
  if (!state.readingMore) {
    state.readingMore = true;
    return;
  }
  // Ticks run before immediates: by then the pending one has run and cleared the mark.
  setImmediate(() => {
    state.readingMore = true;
  });
}
