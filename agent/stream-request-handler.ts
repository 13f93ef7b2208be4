import type { Duplex } from 'node:stream';
import {
  DevstreamsError,
  LIMITS,
  PROTOCOL_VERSION,
  STREAM_ID_PATTERN,
  StreamRequestSchema,
  decodePayload,
  httpStatusOf,
  isOwnResponseTopic,
  type BridgeResult,
  type DeviceStatus,
  type Logger,
  type StreamRequest,
  type StreamResponse,
} from '../protocol/index.js';
import type { Allowlist } from './allowlist.js';
import type { AllowEntry } from './config.js';
import { BUILTIN_TARGETS } from './echo-service.js';
import type { RelayDialer } from './relay-dialer.js';
import { runStreamSession } from './stream-session.js';
import type { StreamEntry, StreamTable } from './stream-table.js';
import type { TargetDialer } from './target-dialer.js';

export interface StreamRequestHandlerOptions {
  deviceId: string;
  /** The hub URL's hostname: the only host a relay URL may name, unless relayHosts is given. */
  hubHostname: string;
  /** Hosts a relay URL may name (lowercase), e.g. the hub nodes behind an external broker. */
  relayHosts?: readonly string[];
  allowlist: Allowlist;
  table: StreamTable;
  targetDialer: TargetDialer;
  relayDialer: RelayDialer;
  /** Publishes an answer (QoS 1) on a response topic. */
  respond: (topic: string, response: StreamResponse) => void;
  /** Called when an accepted stream's session ends: its byte counts, or undefined if it never carried bytes (relay unreachable, shutdown). */
  onSessionEnd?: (result: BridgeResult | undefined) => void;
  log: Logger;
  now?: () => number;
}

const MAX_REASON_LENGTH = 300;
const RECENT_IDS = 1024;

/**
 * Decides each stream request, in exactly the order of ARCHITECTURE.md "Agent decision order":
 * decode, replyTo, expiry, relay host, service policy, limits, target connect, then answer 200 and
 * hand the stream to runStreamSession. Nothing is dialled before policy has allowed it.
 */
export class StreamRequestHandler {
  private readonly o: StreamRequestHandlerOptions;
  private allowlist: Allowlist;
  private readonly log: Logger;
  private readonly now: () => number;
  /** Stream ids already handled (QoS 1 may deliver a request twice). */
  private readonly recent = new Set<string>();
  private accepting = false;
  private readonly sessions = new Set<Promise<void>>();

  constructor(opts: StreamRequestHandlerOptions) {
    this.o = opts;
    this.allowlist = opts.allowlist;
    this.log = opts.log.child({ component: 'streams' });
    this.now = opts.now ?? Date.now;
  }

  async start(): Promise<void> {
    this.accepting = true;
  }

  /** A new policy (SIGHUP reload): the next request is decided by it; open streams stay. */
  setAllowlist(allowlist: Allowlist): void {
    this.allowlist = allowlist;
  }

  /** Stops accepting requests (later ones are answered 503 SHUTTING_DOWN). Open streams are the table's. */
  async stop(): Promise<void> {
    this.accepting = false;
  }

  /** Handles one request payload; never throws. Resolves once the request is answered (or dropped). */
  async handle(payload: Buffer): Promise<void> {
    try {
      await this.decide(payload);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'stream request failed');
    }
  }

  private async decide(payload: Buffer): Promise<void> {
    // 1. Decode: size, JSON, schema.
    const decoded = decodePayload(StreamRequestSchema, payload);
    if (!decoded.ok) return this.refuseUndecodable(payload, decoded.error);
    const req = decoded.value;
    const log = this.log.child({ stream: req.streamId.slice(0, 8), service: req.service });

    // 2. replyTo must be one of this device's own response topics, or there is no safe answer.
    if (!isOwnResponseTopic(req.replyTo, this.o.deviceId)) {
      log.warn({ replyTo: req.replyTo }, 'stream request with a foreign replyTo dropped');
      return;
    }
    if (this.recent.has(req.streamId)) {
      log.warn('duplicate stream request ignored');
      return;
    }
    this.remember(req.streamId);
    const refuse = (err: DevstreamsError): void => this.answer(req, log, err.code, err.reason);
    if (!this.accepting) return refuse(new DevstreamsError('SHUTTING_DOWN', 'agent is shutting down'));

    // 3. Expiry, with the clock-skew allowance.
    if (this.now() > req.expiresAt + LIMITS.maxClockSkewMs) return refuse(new DevstreamsError('BAD_REQUEST', 'request expired'));

    // 4. The relay must be the hub's own host, over TLS.
    const relayProblem = this.relayUrlProblem(req.relayUrl);
    if (relayProblem) return refuse(new DevstreamsError('BAD_REQUEST', relayProblem));

    // 5. Policy: the service must be on the allowlist.
    let entry: AllowEntry;
    try {
      entry = this.allowlist.resolve(req.service);
    } catch (err) {
      if (err instanceof DevstreamsError) return refuse(err);
      throw err;
    }
    const builtin = entry.kind === 'builtin' ? BUILTIN_TARGETS[entry.builtin] : undefined;
    if (entry.kind === 'builtin' && !builtin) {
      return refuse(new DevstreamsError('SERVICE_UNKNOWN', `builtin service "${entry.builtin}" is not available on this agent`));
    }

    // 6. Limits: streams being set up and open.
    const slot = this.o.table.reserve(req.streamId, entry.name);
    if (!slot) {
      // Named like the hub's limits: the setting, and where it is (the device's agent config).
      return refuse(
        new DevstreamsError(
          'LIMIT_EXCEEDED',
          `device has ${this.o.table.size} streams open or being set up (limits.maxStreams: ${this.o.table.limit} in the agent config)`,
        ),
      );
    }

    // 7. Connect the target (builtins need no connect). The relay's TLS connection opens meanwhile,
    // so its handshake overlaps the connect and the answer's trip through the hub.
    const releaseRelayConnection = this.o.relayDialer.preconnect(req.relayUrl);
    let target: Duplex;
    if (builtin) target = builtin();
    else if (entry.kind === 'tcp') {
      try {
        target = await this.o.targetDialer.dial(entry.host, entry.port, slot.abort.signal);
      } catch (err) {
        releaseRelayConnection();
        this.o.table.release(slot);
        if (err instanceof DevstreamsError) return refuse(err);
        throw err;
      }
    } else throw new Error('unreachable');
    if (slot.abort.signal.aborted) {
      releaseRelayConnection();
      target.destroy();
      this.o.table.release(slot);
      return refuse(new DevstreamsError('SHUTTING_DOWN', 'agent is shutting down'));
    }

    // 8. Accept, then dial the relay and bridge.
    this.answer(req, log, 'OK', 'accepted');
    const session = runStreamSession({
      entry: slot,
      relayUrl: req.relayUrl,
      token: req.token,
      target,
      relayDialer: this.o.relayDialer,
      releaseRelayConnection,
      log,
    });
    this.track(slot, session.then((r) => this.o.onSessionEnd?.(r)));
  }

  /** Waits (at most `timeoutMs`) for running sessions to finish; shutdown calls it after ending the streams. */
  async settled(timeoutMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...this.sessions]),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
  }

  private track(slot: StreamEntry, session: Promise<void>): void {
    const p = session.finally(() => {
      this.o.table.release(slot);
      this.sessions.delete(p);
    });
    this.sessions.add(p);
  }

  private answer(req: StreamRequest, log: Logger, code: 'OK' | DevstreamsError['code'], reason: string): void {
    const status = (code === 'OK' ? 200 : httpStatusOf(code)) as DeviceStatus;
    if (code === 'OK') log.debug('stream request accepted');
    else log.info({ status, code, reason }, 'stream request refused');
    this.o.respond(req.replyTo, { v: PROTOCOL_VERSION, streamId: req.streamId, status, code, reason: clip(reason) });
  }

  /**
   * A request that fails decoding is answered 400 if its stream id and replyTo can still be read
   * and are valid (the hub is then told what is wrong); otherwise there is no one to answer.
   */
  private refuseUndecodable(payload: Buffer, error: string): void {
    const reason = `bad request: ${error}`;
    let raw: unknown;
    try {
      raw = payload.length <= LIMITS.maxControlPayloadBytes ? JSON.parse(payload.toString('utf8')) : undefined;
    } catch {
      raw = undefined;
    }
    const r = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
    const streamId = typeof r.streamId === 'string' && STREAM_ID_PATTERN.test(r.streamId) ? r.streamId : undefined;
    const replyTo = typeof r.replyTo === 'string' && isOwnResponseTopic(r.replyTo, this.o.deviceId) ? r.replyTo : undefined;
    if (!streamId || !replyTo) {
      this.log.warn({ reason: clip(reason) }, 'malformed stream request dropped (no stream id or replyTo to answer)');
      return;
    }
    const log = this.log.child({ stream: streamId.slice(0, 8) });
    log.info({ status: 400, code: 'BAD_REQUEST', reason: clip(reason) }, 'stream request refused');
    this.o.respond(replyTo, { v: PROTOCOL_VERSION, streamId, status: 400, code: 'BAD_REQUEST', reason: clip(reason) });
  }

  private relayUrlProblem(relayUrl: string): string | null {
    let u: URL;
    try {
      u = new URL(relayUrl);
    } catch {
      return 'relayUrl: not a URL';
    }
    if (u.protocol !== 'wss:') return `relayUrl: scheme must be wss: (got ${u.protocol})`;
    if (u.username || u.password) return 'relayUrl: must not carry credentials';
    const allowed = this.o.relayHosts ?? [this.o.hubHostname.toLowerCase()];
    if (!allowed.includes(u.hostname.toLowerCase())) {
      return `relayUrl: host ${clip(u.hostname, 64)} is not this device's hub (${clip(allowed.join(', '), 128)})`;
    }
    return null;
  }

  private remember(id: string): void {
    this.recent.add(id);
    if (this.recent.size > RECENT_IDS) this.recent.delete(this.recent.values().next().value as string);
  }
}

function clip(s: string, max = MAX_REASON_LENGTH): string {
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}
