import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import type { Logger } from 'pino';

/**
 * The event a source emits around the parts of one message it pushes in a row (WsDuplex: a DATA
 * frame that arrived in several TLS reads, protocol/ws-zero-copy.ts): `true` before the first part,
 * `false` after the last. A bridge corks a TCP destination in between, so the parts leave with one
 * writev system call.
 */
export const MESSAGE_PARTS = 'messageParts';

export interface BridgeResult {
  /** Bytes read from `a` and written to `b`, and the other way. */
  bytesAtoB: number;
  bytesBtoA: number;
  durationMs: number;
  /** The first error that ended the bridge, if it did not end cleanly. */
  error?: Error;
  /** Which end failed first ('a' or 'b'), if one did. */
  failedSide?: 'a' | 'b';
}

/**
 * Pipes two duplexes both ways (chisel's cio.Pipe, ws's lib/stream.js): backpressure through
 * `pipe`, a half-close on one side ends the other side's writable only after all data before it,
 * and an error on either side destroys both, exactly once. Resolves when both ends have closed and
 * logs the bytes each way at `info` (`labels` name the two ends in that line).
 */
export function bridge(
  a: Duplex,
  b: Duplex,
  log: Logger,
  labels: { a: string; b: string } = { a: 'a', b: 'b' },
): Promise<BridgeResult> {
  const started = Date.now();
  const result: BridgeResult = { bytesAtoB: 0, bytesBtoA: 0, durationMs: 0 };
  a.on('data', (chunk: Buffer) => (result.bytesAtoB += chunk.length));
  b.on('data', (chunk: Buffer) => (result.bytesBtoA += chunk.length));
  // Before the pipes' own 'data' handlers, so the writes they make are corked together.
  if (isPlainTcp(b)) joinWrites(a, b);
  if (isPlainTcp(a)) joinWrites(b, a);

  const fail = (side: 'a' | 'b', err: Error): void => {
    if (!result.error) {
      result.error = err;
      result.failedSide = side;
    }
    destroyBoth(err);
  };
  let destroyed = false;
  const destroyBoth = (err: Error): void => {
    if (destroyed) return;
    destroyed = true;
    for (const s of [a, b]) if (!s.destroyed) abortDuplex(s, err);
  };

  a.on('error', (err) => fail('a', err));
  b.on('error', (err) => fail('b', err));
  // Before the pipes' own 'end' handlers, so a reset is found as early as possible.
  for (const s of [a, b]) if (isPlainTcp(s)) probeResetOnEof(s);
  a.pipe(b);
  b.pipe(a);

  return new Promise((resolve) => {
    let open = 2;
    const onClose = (): void => {
      // One side closed before the other finished: the survivor cannot complete, close it too.
      if (--open === 1) {
        const survivor = a.destroyed && !b.destroyed ? b : !a.destroyed && b.destroyed ? a : null;
        const dead = survivor === a ? b : a;
        if (survivor && !(dead.readableEnded && dead.writableFinished)) {
          if (!result.error) {
            result.error = new Error(`${survivor === a ? labels.b : labels.a} closed before the stream ended`);
            result.failedSide = survivor === a ? 'b' : 'a';
          }
          destroyBoth(result.error);
        }
        return;
      }
      result.durationMs = Date.now() - started;
      const fields = {
        [`bytes_${labels.a}_to_${labels.b}`]: result.bytesAtoB,
        [`bytes_${labels.b}_to_${labels.a}`]: result.bytesBtoA,
        durationMs: result.durationMs,
        ...(result.error ? { err: result.error.message, failedSide: result.failedSide === 'a' ? labels.a : labels.b } : {}),
      };
      log.info(fields, result.error ? 'bridge ended with error' : 'bridge closed');
      resolve(result);
    };
    // A side that closed before the bridge began (a target that answered and reset while the
    // relay was still being dialled) will not emit 'close' again: count it now, with its error.
    for (const [s, side] of [[a, 'a'], [b, 'b']] as const) {
      if (!s.destroyed) {
        s.once('close', onClose);
        continue;
      }
      // Its EOF or error has been emitted already and cannot be carried: end the other side too.
      process.nextTick(() => {
        fail(side, s.errored ?? new Error(`${side === 'a' ? labels.a : labels.b} closed before the stream began`));
        onClose();
      });
    }
  });
}

/**
 * Joins what `src` hands on in a row into one write to the TCP socket `dst`, without delaying a lone
 * chunk: the parts of one message (MESSAGE_PARTS) are corked around, synchronously, so a DATA frame
 * that came in several TLS reads (16 KiB each at most: a 256 KiB frame in sixteen or more) goes out
 * with one writev system call, not one write per part; and when `src` emits what it had buffered
 * (its reader paused, then resumed) the chunks of that tick are corked until the tick ends. A chunk
 * alone, as every message of an interactive session, is written at once. Corking every chunk until
 * its tick ended cost the agent a `process.nextTick` per message, issue 6's twenty-fifth round
 * (bench/HISTORY.md).
 */
function joinWrites(src: Duplex, dst: Socket): void {
  src.on(MESSAGE_PARTS, (begin: boolean) => (begin ? dst.cork() : dst.uncork()));
  let corked = false;
  const uncork = (): void => {
    corked = false;
    dst.uncork();
  };
  src.on('data', () => {
    if (corked || src.readableLength === 0) return; // nothing more buffered behind this chunk
    corked = true;
    dst.cork();
    process.nextTick(uncork);
  });
}

function isPlainTcp(s: Duplex): s is Socket {
  return s instanceof Socket && !(s as Socket & { encrypted?: boolean }).encrypted;
}

/**
 * A TCP peer that sent bytes and then reset the connection is reported by Node as a plain EOF
 * (libuv takes the hang-up after a short read for an EOF and never reads the ECONNRESET), so a
 * half-open socket would wait forever for writes that can never arrive. On EOF, a zero-length write
 * tells the two apart: nothing is sent on a connection whose peer half-closed (FIN), and it fails with
 * ECONNRESET or EPIPE on a reset one, which ends the bridge through the socket's 'error'.
 */
function probeResetOnEof(s: Socket): void {
  const probe = (): void => {
    if (!s.destroyed && s.writable) s.write(Buffer.alloc(0));
  };
  if (s.readableEnded) process.nextTick(probe);
  else s.once('end', probe);
}

/** TCP sockets are reset (RST) so the peer sees an abort, not a clean EOF; other streams destroyed. */
function abortDuplex(s: Duplex, err: Error): void {
  const sock = s as Partial<Socket>;
  if (typeof sock.resetAndDestroy === 'function' && sock.readyState === 'open') sock.resetAndDestroy();
  else s.destroy(err);
}
