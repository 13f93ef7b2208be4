import { once } from 'node:events';
import { IdleMemoryReclaimer, RELAY_HEAP_THRESHOLDS, collectGarbage, isLoopbackHost, type ErrorCode } from '../protocol/index.js';
import type { ServiceContext } from './context.js';
import { HubRefusalError, refusedLine, streamFailedLine } from './errors.js';
import { Forwarder } from './forward.js';

/**
 * `devstreams forward DEVICE SERVICE --listen [HOST:]PORT`: asks the hub for the device first (a
 * token the hub refuses, a device it does not know, or a device or service outside the token's
 * scope, ends the command there, with the one line `connect` prints; a hub it cannot reach is only
 * noted); then listens, prints `listening on HOST:PORT -> DEVICE/SERVICE` (the real port) on
 * stdout, forwards each
 * accepted connection over its own stream until SIGINT/SIGTERM, then stops and returns 0. A
 * connection whose stream is refused, or whose stream the device side ends, gets the same one line
 * on stderr as `connect`'s. A stream refused with UNAUTHORIZED (the token revoked since start-up)
 * ends it too, with 1: every later connection would be refused the same way. Connections still open
 * when it stops are cut, and one line on stderr says how many.
 */
export async function runForward(
  ctx: ServiceContext,
  device: string,
  service: string,
  listen: { host: string; port: number },
  timeoutMs: number | undefined,
  stopSignal: Promise<unknown> = onceSignal(),
): Promise<number> {
  if (!(await preflight(ctx, device, service))) return 1;
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
  let tokenRefused!: () => void;
  const refused = new Promise<'refused'>((resolve) => (tokenRefused = () => resolve('refused')));
  const warning = exposedWarning(listen.host, device, service);
  if (warning) ctx.err(warning);
  const forwarder = new Forwarder({
    client: ctx.client,
    device,
    service,
    host: listen.host,
    port: listen.port,
    ...(timeoutMs !== undefined ? { stream: { timeoutMs } } : {}),
    logger: ctx.log,
    onConnections: () => reclaimer.poke(),
    onRefused: (err, peer) => {
      ctx.err(`${err instanceof HubRefusalError ? refusedLine(device, service, err) : streamFailedLine(device, service, err)} (from ${peer})`);
      if (err instanceof HubRefusalError && FINAL_AFTER_START.has(err.code)) tokenRefused();
    },
    onStreamFailed: (err, peer) => ctx.err(`${streamFailedLine(device, service, err)} (from ${peer})`),
  });
  try {
    await forwarder.start();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    ctx.err(`devstreams: cannot listen on ${hostPort(listen.host, listen.port)}: ${listenProblem(e)}`);
    return 1;
  }
  const { host, port } = forwarder.address;
  ctx.out(`listening on ${hostPort(host, port)} -> ${device}/${service}\n`);
  ctx.log.info({ host, port, device, service }, 'forwarder listening');
  reclaimer.poke();
  const why = await Promise.race([stopSignal.then(() => 'stopped' as const), refused]);
  reclaimer.stop();
  if (why === 'refused') ctx.err(`devstreams: forward ends: the hub no longer accepts its token, every connection would be refused`);
  const open = forwarder.openConnections;
  if (open > 0) ctx.err(`devstreams: closing ${open} open connection${open === 1 ? '' : 's'}`);
  ctx.log.info('forwarder stopping');
  await forwarder.stop();
  ctx.client.close();
  return why === 'refused' ? 1 : 0;
}

/** Refusals that no later connection would get past: forward ends at once with them. */
const FINAL_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['UNAUTHORIZED', 'FORBIDDEN', 'DEVICE_UNKNOWN']);

/**
 * Refusals of a connection's stream that end forward: the token no longer valid (revoked). The
 * others stay per connection: a scope, an allowlist or a device's state may differ for the next one,
 * or change.
 */
const FINAL_AFTER_START: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['UNAUTHORIZED']);

/**
 * The device as the hub sees it, before listening: false (the line printed) when the hub refuses
 * the token, or does not know the device, or the token may not reach it or use the service (a hub
 * older than 0.2 ignores the service and leaves that to each connection). Anything else is only
 * noted and forward listens: an offline device may come online, and a hub that cannot be reached
 * now (a forward started at boot before the network, or during the hub's restart) may be reached
 * by the first connection. A service the device's allowlist refuses can only be learnt by opening
 * a stream, which would reach the device's service; each connection reports that.
 */
async function preflight(ctx: ServiceContext, device: string, service: string): Promise<boolean> {
  try {
    const info = await ctx.client.getDevice(device, { service });
    if (!info.online) ctx.err(`devstreams: ${device} is ${info.disabled ? 'disabled on the hub' : 'offline'} now: each connection is refused until it comes online`);
    return true;
  } catch (err) {
    if (err instanceof HubRefusalError && FINAL_REFUSALS.has(err.code)) {
      ctx.err(refusedLine(device, service, err));
      return false;
    }
    ctx.err(`devstreams: could not check ${device} with the hub, listening anyway: ${(err as Error).message}`);
    return true;
  }
}

/** The warning for a listen address other hosts can reach (a forward carries its user's token). */
export function exposedWarning(host: string, device: string, service: string): string | null {
  if (isLoopbackHost(host)) return null;
  return `devstreams: warning: listening on ${host}, not loopback: whoever can reach it reaches ${device}/${service} with your token`;
}

/** Why a listen failed, in words, with the system's code. */
function listenProblem(e: NodeJS.ErrnoException): string {
  const words: Record<string, string> = {
    EADDRINUSE: 'the port is in use (another forward, or another program, listens there)',
    EACCES: 'permission denied (ports below 1024 need privileges)',
    EADDRNOTAVAIL: 'this machine has no such address',
  };
  return e.code ? `${words[e.code] ? `${words[e.code]}, ` : ''}${e.code}` : e.message;
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
