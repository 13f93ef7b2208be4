import { EventEmitter } from 'node:events';
import { IdleMemoryReclaimer, clientCiphers, mintDeviceToken, releaseMaglev, resolveTlsCipher, type HeapThresholds, type Logger, type TlsCipherResolution } from '../protocol/index.js';
import { Allowlist } from './allowlist.js';
import type { AgentConfig } from './config.js';
import { ControlChannel } from './control-channel.js';
import { hubTlsContext } from './hub-tls.js';
import { RelayDialer } from './relay-dialer.js';
import { StreamRequestHandler } from './stream-request-handler.js';
import { StreamTable } from './stream-table.js';
import { TargetDialer } from './target-dialer.js';
import { proxyAgent, proxyFor, redactProxy, type ProxyEnv } from './proxy.js';
import { reloadProblems, type ReloadResult } from './reload.js';
import { warnIfKeyFileExposed } from './key-file-check.js';
import type { AgentMetrics } from './metrics-registry.js';
import type { MetricsServer } from './metrics-server.js';
import { StatusCollector } from './status-collector.js';
import { StatusReporter } from './status-reporter.js';

/** Lifetime of the device token a multiplexed relay connection is opened with. */
const MUX_TOKEN_TTL_SEC = 300;

export interface AgentOptions {
  config: AgentConfig;
  log: Logger;
  /** HTTPS_PROXY / NO_PROXY as read at start-up by the CLI (the config's hub.proxy wins). */
  proxyEnv?: ProxyEnv;
  /**
   * While streams are open, glibc's heap thresholds (protocol/idle-memory.ts), read at each stream
   * change; agent/cli.ts: RELAY_HEAP_THRESHOLDS in throughput mode, else null (glibc's own).
   */
  keepFreedWhileBusy?: () => Readonly<HeapThresholds> | null;
}

/**
 * The device daemon's composition root. Builds its components (no I/O), starts them in order
 * (streams, request handler, control channel) and stops them in reverse: stop accepting requests,
 * close the control channel (retained offline status), then end the open streams.
 * Events: 'connected' and 'disconnected' (the control channel).
 */
export class Agent extends EventEmitter {
  readonly deviceId: string;
  private config: AgentConfig;
  private readonly targetDialer: TargetDialer;
  private readonly log: Logger;
  private readonly table: StreamTable;
  private readonly handler: StreamRequestHandler;
  private readonly relayDialer: RelayDialer;
  private readonly channel: ControlChannel;
  private readonly status: StatusReporter;
  private readonly reclaimer: IdleMemoryReclaimer;
  /** The cipher the hub connections ask for first, and what `auto` measured. */
  readonly tlsCipher: TlsCipherResolution;
  /** Loaded by start() only when metrics.listen is set: prom-client stays out of an agent without it. */
  metrics: AgentMetrics | null = null;
  metricsServer: MetricsServer | null = null;
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(opts: AgentOptions) {
    super();
    const { config } = opts;
    this.deviceId = config.hub.deviceId;
    this.config = config;
    this.log = opts.log.child({ deviceId: this.deviceId });
    // The cipher asked for first on every hub connection (auto: measured on this CPU, once), and one
    // TLS context for all of them: the system's roots plus the configured CA (agent/hub-tls.ts).
    this.tlsCipher = resolveTlsCipher(config.hub.tlsCipher);
    const secureContext = hubTlsContext({ ca: config.hub.ca, ciphers: clientCiphers(this.tlsCipher.cipher) });
    // One proxy decision for the hub's host: the control channel and the relay share it.
    const hubUrl = new URL(config.hub.url);
    const proxy = proxyFor(hubUrl, config.hub.proxy, opts.proxyEnv ?? {});
    // The control channel tells a proxy's refusal itself, as its `control channel error` (agent/control-ws.ts).
    const wsAgent = proxy !== undefined && hubUrl.protocol === 'wss:' ? proxyAgent(proxy) : undefined;
    if (proxy !== undefined) {
      if (wsAgent) this.log.info({ proxy: redactProxy(proxy) }, 'hub connections go through an HTTP proxy');
      else this.log.warn({ proxy: redactProxy(proxy) }, 'an mqtts:// control channel does not use the proxy (use a wss:// hub URL)');
    }
    this.targetDialer = new TargetDialer({ connectTimeoutMs: config.limits.connectTimeoutMs });

    // Memory back once the agent is online with no stream for a while (protocol/idle-memory.ts).
    this.reclaimer = new IdleMemoryReclaimer({
      busy: () => this.table.size > 0,
      log: this.log,
      ...(opts.keepFreedWhileBusy ? { keepWhileBusy: opts.keepFreedWhileBusy } : {}),
    });
    this.table = new StreamTable({
      maxStreams: config.limits.maxStreams,
      onChange: () => {
        if (this.table.size > 0 && releaseMaglev()) this.log.info('first stream: Maglev compiler on');
        this.channel.streamsChanged();
        this.reclaimer.poke();
      },
    });
    this.status = new StatusReporter({
      collector: new StatusCollector({ probeTimeoutMs: config.status.probeTimeoutMs, log: this.log }),
      intervalMs: config.status.intervalSec * 1000,
      publish: () => this.channel.streamsChanged(), // a throttled status publish
      log: this.log,
    });
    this.handler = new StreamRequestHandler({
      deviceId: this.deviceId,
      hubHostname: new URL(config.hub.url).hostname,
      relayHosts: config.hub.relayHosts,
      allowlist: new Allowlist(config.allow),
      table: this.table,
      targetDialer: this.targetDialer,
      relayDialer: (this.relayDialer = new RelayDialer({
        secureContext,
        pingIntervalMs: config.hub.pingIntervalMs,
        ...(config.hub.multiplex ? { deviceToken: () => this.muxToken(), log: this.log, onMuxClosed: () => this.reclaimer.poke() } : {}),
        ...(proxy !== undefined ? { agent: proxyAgent(proxy, this.log.child({ component: 'relay' })) } : {}),
      })),
      respond: (topic, response) => {
        this.metrics?.answered(response.code);
        if (response.status >= 500) this.status.recordError(response.code, response.reason);
        this.channel.respond(topic, response);
      },
      onSessionEnd: (r) => {
        if (r) this.metrics?.streamEnded(r.bytesAtoB, r.bytesBtoA);
        else if (!this.stopping) this.status.recordError('RELAY_FAILED', 'an accepted stream ended before carrying data (relay unreachable or refused)');
      },
      log: this.log,
    });
    this.channel = new ControlChannel({
      url: config.hub.url,
      deviceId: this.deviceId,
      key: config.hub.key,
      ...(config.hub.keyFile !== undefined ? { keyFile: config.hub.keyFile } : {}),
      auth: config.hub.auth,
      tokenTtlSec: config.hub.tokenTtlSec,
      secureContext,
      log: this.log,
      onRequest: (payload) => void this.handler.handle(payload),
      openStreams: () => this.table.size,
      keepaliveSec: config.hub.keepaliveSec,
      statusFields: () => this.status.fields(),
      reconnect: config.hub.reconnect,
      ...(wsAgent ? { wsAgent, proxy: redactProxy(proxy!) } : {}),
    });
    this.channel.on('connected', () => {
      this.reclaimer.poke(); // start-up's garbage goes once the agent is online and idle
      this.log.info('agent connected');
      this.metrics?.connected();
      this.emit('connected');
    });
    this.channel.on('disconnected', () => {
      this.metrics?.disconnected();
      this.emit('disconnected');
    });
  }

  /** True while the control channel is connected and subscribed. */
  get connected(): boolean {
    return this.channel.connected;
  }

  /** Streams being set up or open. */
  get openStreams(): number {
    return this.table.size;
  }

  /** Starts the agent; the control channel connects (and reconnects) in the background. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    warnIfKeyFileExposed(this.config.hub.keyFile, this.log);
    await this.table.start();
    await this.handler.start();
    await this.startMetrics();
    await this.status.start();
    await this.channel.start();
    this.log.info({ allow: this.describeAllowlist(), tlsCipher: this.describeTlsCipher() }, 'agent started');
  }

  /** The metrics listener, when configured: its modules (and prom-client) are loaded here, not at start-up. */
  private async startMetrics(): Promise<void> {
    const { listen, allowNonLoopback } = this.config.metrics;
    if (!listen) return;
    const [{ AgentMetrics }, { MetricsServer }] = await Promise.all([import('./metrics-registry.js'), import('./metrics-server.js')]);
    this.metrics = new AgentMetrics({ openStreams: () => this.table.size });
    this.metricsServer = new MetricsServer({ listen, allowNonLoopback, metrics: this.metrics, log: this.log });
    await this.metricsServer.start();
  }

  /** Resolves once the control channel is connected (or at once if it is). */
  waitConnected(): Promise<void> {
    return this.connected ? Promise.resolve() : new Promise((resolve) => this.once('connected', () => resolve()));
  }

  /**
   * Applies a re-read config (SIGHUP): the allowlist and limits take effect for the next request,
   * the device key for the next connection to the hub; open streams and the connection that is up
   * are untouched. Settings that need a restart (the rest of hub.*, log, shutdown) are reported, not
   * applied. The caller has already validated the file (an invalid one never gets here).
   */
  reload(next: AgentConfig): ReloadResult {
    const result = reloadProblems(this.config, next);
    this.handler.setAllowlist(new Allowlist(next.allow));
    this.table.setLimit(next.limits.maxStreams);
    this.targetDialer.setConnectTimeout(next.limits.connectTimeoutMs);
    const keyChanged = next.hub.key !== this.config.hub.key;
    // Not connected: the new key is tried at once (the channel skips the rest of its backoff).
    this.channel.setKey(next.hub.key, next.hub.keyFile);
    const { keyFile: _was, ...rest } = this.config.hub; // from a keyFile to an inline key, or back
    const hub = { ...rest, key: next.hub.key, ...(next.hub.keyFile !== undefined ? { keyFile: next.hub.keyFile } : {}) };
    this.config = { ...this.config, hub, allow: next.allow, limits: next.limits };
    this.log.info(
      {
        allow: this.describeAllowlist(),
        limits: next.limits,
        ...(keyChanged ? { keyChanged: this.channel.connected ? 'used from the next connection' : 'used now: reconnecting' } : {}),
        ...(result.needRestart.length ? { needRestart: result.needRestart } : {}),
      },
      result.needRestart.length
        ? `config reloaded (allowlist, limits, key); changes to ${result.needRestart.join(', ')} need a restart and were not applied`
        : 'config reloaded (allowlist, limits, key)',
    );
    return result;
  }

  /**
   * Graceful stop (SIGTERM): new requests get 503 SHUTTING_DOWN at once, open streams may finish
   * for up to `graceMs`, then the rest are closed, the offline status published. Idempotent.
   */
  drain(graceMs: number = this.config.shutdown.graceMs): Promise<void> {
    this.stopping ??= (async () => {
      await this.handler.stop();
      const open = this.table.size;
      if (open > 0) {
        this.log.info({ openStreams: open, graceMs }, 'agent draining: new requests refused, open streams may finish');
        const drained = await this.table.waitEmpty(graceMs);
        if (!drained) this.log.warn({ openStreams: this.table.size, graceMs }, 'grace period over, closing the remaining streams');
      }
      await this.table.stop();
      await this.channel.stop();
      await this.stopTheRest();
    })();
    return this.stopping;
  }

  /** Idempotent: stop accepting, go offline, end the streams. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.handler.stop();
      await this.channel.stop();
      await this.table.stop();
      await this.stopTheRest();
    })();
    return this.stopping;
  }

  /** The end of drain() and stop(), once the streams and the channel are down. */
  private async stopTheRest(): Promise<void> {
    this.reclaimer.stop();
    await this.handler.settled();
    this.relayDialer.stop();
    await this.status.stop();
    await this.metricsServer?.stop();
    this.log.info('agent stopped');
  }

  /** A device token for a multiplexed relay connection: checked once, at its upgrade, so short-lived. */
  private muxToken(): string {
    const ttl = Math.min(this.config.hub.tokenTtlSec, MUX_TOKEN_TTL_SEC);
    return mintDeviceToken(this.deviceId, this.config.hub.key, Math.floor(Date.now() / 1000) + ttl);
  }

  /** E.g. "chacha20-poly1305 (auto: aes-gcm 4.14 ns/B, chacha20-poly1305 1.11 ns/B)". */
  private describeTlsCipher(): string {
    const m = this.tlsCipher.measured;
    if (!m) return this.tlsCipher.cipher;
    return `${this.tlsCipher.cipher} (auto: aes-gcm ${m.aesGcmNsPerByte.toFixed(2)} ns/B, chacha20-poly1305 ${m.chacha20NsPerByte.toFixed(2)} ns/B)`;
  }

  private describeAllowlist(): string[] {
    return this.config.allow.map((e) => (e.kind === 'builtin' ? `${e.name}=builtin:${e.builtin}` : `${e.name}=${e.host}:${e.port}`));
  }
}
