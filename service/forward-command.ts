import { once } from 'node:events';
import { IdleMemoryReclaimer, RELAY_HEAP_THRESHOLDS, collectGarbage } from '../protocol/index.js';
import type { ServiceContext } from './context.js';
import { Forwarder } from './forward.js';

/**
 * `devstreams forward DEVICE SERVICE --listen [HOST:]PORT`: listens, prints
 * `listening on HOST:PORT -> DEVICE/SERVICE` (the real port) on stdout, forwards each accepted
 * connection over its own stream until SIGINT/SIGTERM, then stops and returns 0.
 */
export async function runForward(
  ctx: ServiceContext,
  device: string,
  service: string,
  listen: { host: string; port: number },
  timeoutMs: number | undefined,
  stopSignal: Promise<unknown> = onceSignal(),
): Promise<number> {
  // A forwarder may run for days: memory back once no connection has been open for a while (the
  // CLI's process only; the SDK's Forwarder leaves its user's process alone).
  // While connections are open glibc keeps freed buffers for the next reads (protocol/malloc-trim.ts).
  const reclaimer = new IdleMemoryReclaimer({
    busy: () => forwarder.connections > 0,
    log: ctx.log,
    keepWhileBusy: () => RELAY_HEAP_THRESHOLDS,
    // Not the agent's collection that drops the bytecode not in use (protocol/gc-tuning.ts): a
    // user's machine has memory to spare, and the next connection would wait while forward compiles
    // its path again.
    collect: () => collectGarbage({ dropBytecode: false }),
  });
  const forwarder = new Forwarder({
    client: ctx.client,
    device,
    service,
    host: listen.host,
    port: listen.port,
    ...(timeoutMs !== undefined ? { stream: { timeoutMs } } : {}),
    logger: ctx.log,
    onConnections: () => reclaimer.poke(),
  });
  try {
    await forwarder.start();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    ctx.err(`devstreams: cannot listen on ${hostPort(listen.host, listen.port)}: ${e.code ?? e.message}`);
    return 1;
  }
  const { host, port } = forwarder.address;
  ctx.out(`listening on ${hostPort(host, port)} -> ${device}/${service}\n`);
  ctx.log.info({ host, port, device, service }, 'forwarder listening');
  reclaimer.poke();
  await stopSignal;
  reclaimer.stop();
  ctx.log.info('forwarder stopping');
  await forwarder.stop();
  ctx.client.close();
  return 0;
}

export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Resolves on the first SIGINT or SIGTERM (and stops listening for both). */
export function onceSignal(): Promise<void> {
  const ac = new AbortController();
  return Promise.race([
    once(process, 'SIGINT', { signal: ac.signal }),
    once(process, 'SIGTERM', { signal: ac.signal }),
  ]).then(() => ac.abort(), () => undefined);
}
