import type { Duplex } from 'node:stream';
import { WsDuplex, bridge, type BridgeResult, type Logger } from '../protocol/index.js';
import { RelayDialError, type RelayDialer } from './relay-dialer.js';
import type { StreamEntry } from './stream-table.js';

/**
 * Step 8 of the decision order, after the 200 answer: dial the relay for this stream and bridge it
 * with the target (a connected TCP socket or a builtin), until both ends are closed. Never throws;
 * whatever happens, the target is closed when this resolves.
 */
export async function runStreamSession(opts: {
  entry: StreamEntry;
  relayUrl: string;
  token: string;
  target: Duplex;
  relayDialer: RelayDialer;
  /** Closes the relay connection opened ahead (RelayDialer.preconnect) if the dial did not take it. */
  releaseRelayConnection?: () => void;
  log: Logger;
}): Promise<BridgeResult | undefined> {
  const { entry, target, log } = opts;
  // The target may fail or close while the relay is dialled; its bytes wait in the socket buffer.
  let targetError: Error | undefined;
  const onTargetError = (err: Error): void => {
    targetError ??= err;
  };
  target.on('error', onTargetError);
  entry.target = target;

  let ws;
  try {
    ws = await opts.relayDialer.dial(opts.relayUrl, opts.token, entry.abort.signal);
  } catch (err) {
    target.destroy();
    const e = err as RelayDialError;
    log.warn({ ...(e.status !== undefined ? { status: e.status } : {}), ...(e.code ? { code: e.code } : {}), err: e.message }, 'relay dial failed');
    return;
  } finally {
    opts.releaseRelayConnection?.(); // taken by the dial, or closed now
  }
  target.off('error', onTargetError);

  const relay = new WsDuplex(ws);
  ws.resume(); // the dialer hands it over paused, so no frame is emitted before WsDuplex listens
  entry.relay = relay;
  // Until bridge() takes over, an abort below (or a relay failure) must not throw as an unhandled 'error'.
  const ignore = (): void => {};
  relay.on('error', ignore);
  if (entry.abort.signal.aborted) {
    relay.abort('SHUTTING_DOWN', 'agent is shutting down');
    target.destroy();
    return;
  }
  if (target.destroyed || targetError) {
    relay.abort('TARGET_UNREACHABLE', 'target closed before the stream was paired');
    log.warn({ err: targetError?.message ?? 'closed' }, 'target closed before the relay connected');
    return;
  }
  relay.off('error', ignore);
  entry.phase = 'open';
  log.info('stream open');
  return await bridge(relay, target, log, { a: 'relay', b: 'target' });
}
