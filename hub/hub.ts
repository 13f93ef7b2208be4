import { randomBytes } from 'node:crypto';
import { createLogger, secretMatches, type Logger } from '../protocol/index.js';
import { AedesControlBus } from './aedes-control-bus.js';
import { Api } from './api.js';
import { Broker } from './broker.js';
import type { HubConfig } from './config.js';
import type { ControlBus } from './control-bus.js';
import { DevicePresence } from './device-presence.js';
import { PresenceStore, presenceFileFor } from './presence-store.js';
import { hubEndpoints } from './endpoints.js';
import { Health } from './health.js';
import { HistoryStore } from './history-store.js';
import { HubRefusals } from './hub-refusals.js';
import { HubMetrics } from './metrics.js';
import { MosquittoAccounts } from './mosquitto-accounts.js';
import { MqttControlBus } from './mqtt-control-bus.js';
import { ObserveRoutes } from './observe-routes.js';
import { DeviceRegistry } from './registry.js';
import { ServiceTokens } from './service-tokens.js';
import { Relay } from './relay.js';
import { RelayMux } from './relay-mux.js';
import { StreamConnect } from './stream-connect.js';
import { HubServer } from './server.js';
import { StreamLog } from './stream-log.js';
import { StreamLimits } from './stream-limits.js';
import { StreamRequests } from './stream-requests.js';

interface Component {
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface HubOptions {
  /** A loaded config (hub/config.ts loadHubConfig): paths absolute. */
  config: Readonly<HubConfig>;
  /** Root logger; default: pino JSON on stdout at config.log.level. */
  log?: Logger;
  /** This node's name in replyTo topics; default: random per process. */
  nodeId?: string;
  /** Called when a stream pairs or ends (hub/cli.ts: the idle memory reclaimer). */
  streamsChanged?: () => void;
  /** The hub.yaml the config was loaded from, and whether --listen overrode its listen: named in listen errors. */
  configFile?: string;
  listenFlag?: boolean;
}

/**
 * The hub's composition root: builds every component (no I/O), starts them in order, stops them
 * in reverse. Order: registry, broker, presence (what an earlier run knew, then live), stream
 * requests, relay, API, then the server (which only accepts connections once everything behind it
 * runs).
 */
export class Hub {
  readonly log: Logger;
  readonly nodeId: string;
  readonly registry: DeviceRegistry;
  readonly tokens: ServiceTokens;
  readonly broker: Broker;
  readonly bus: ControlBus;
  readonly presence: DevicePresence;
  readonly streamLog: StreamLog;
  readonly history: HistoryStore;
  readonly metrics: HubMetrics;
  readonly health: Health;
  readonly relay: Relay;
  /** Devices' multiplexed connections; null when config.relay.multiplex is off. Stops after the relay. */
  readonly relayMux: RelayMux | null;
  readonly streams: StreamRequests;
  readonly api: Api;
  readonly server: HubServer;
  private readonly components: Component[];
  private started: Component[] = [];
  private stopping: Promise<void> | null = null;

  constructor(opts: HubOptions) {
    const { config } = opts;
    this.log = opts.log ?? createLogger({ name: 'devstreams-hub', level: config.log.level });
    this.nodeId = opts.nodeId ?? `hub-${randomBytes(6).toString('hex')}`;
    const log = this.log;
    this.registry = new DeviceRegistry({ file: config.registry, log });
    this.broker = new Broker({ registry: this.registry, deviceAuth: config.deviceAuth, log });
    // An external broker (config.mqtt): no embedded broker runs; presence comes from status topics only.
    const external = config.mqtt ? new MqttControlBus({ config: config.mqtt, clientId: `devstreams-${this.nodeId}`, log }) : null;
    this.bus = external ?? new AedesControlBus({ broker: this.broker, log });
    this.presence = new DevicePresence({ bus: this.bus, log, ...(external ? {} : { disconnects: this.broker }) });
    const presenceStore = new PresenceStore({ file: presenceFileFor(config.history.file), presence: this.presence, log });
    this.history = new HistoryStore({
      file: config.history.file,
      maxAgeMs: config.history.maxAgeDays * 86_400_000,
      maxRecords: config.history.maxRecords,
      log,
    });
    this.streamLog = new StreamLog({ log: log.child({ component: 'streams' }), store: this.history });
    this.metrics = new HubMetrics({
      devicesOnline: () => this.presence.onlineCount(),
      streamsOpen: () => this.relay.activeCount(),
      muxConnections: () => this.relayMux?.connectionsBySide() ?? { device: 0, service: 0 },
    });
    this.streamLog.onRecord((r) => this.metrics.streamEnded(r));
    this.broker.onAuthFailure(() => this.metrics.authFailure('mqtt'));
    this.health = new Health({ bus: this.bus, store: this.history, nodeId: this.nodeId, log });
    this.relay = new Relay({
      log,
      streamLog: this.streamLog,
      pingIntervalMs: config.relay.pingIntervalMs,
      joinTimeoutMs: config.handshake.joinTimeoutMs,
      events: {
        paired: (setupMs) => {
          this.metrics.streamPaired(setupMs);
          opts.streamsChanged?.();
        },
        refused: (code) => (code === 'UNAUTHORIZED' || code === 'TOKEN_USED') && this.metrics.authFailure('relay'),
        ended: () => opts.streamsChanged?.(),
      },
    });
    const limits = new StreamLimits({ limits: config.limits, counts: this.relay });
    this.streams = new StreamRequests({
      bus: this.bus,
      registry: this.registry,
      presence: this.presence,
      relay: this.relay,
      streamLog: this.streamLog,
      refusals: new HubRefusals({ streamLog: this.streamLog, log, overRate: () => this.metrics.streamRequestOverRate() }),
      log,
      handshake: config.handshake,
      publicUrl: () => this.server.publicUrl,
      nodeId: this.nodeId,
      limits,
    });
    this.tokens = new ServiceTokens({ file: config.tokens, legacy: config.serviceTokens, log });
    this.api = new Api({
      tokens: this.tokens,
      registry: this.registry,
      presence: this.presence,
      streams: this.streams,
      streamLog: this.streamLog,
      observe: new ObserveRoutes({
        registry: this.registry,
        presence: this.presence,
        streamLog: this.streamLog,
        health: this.health,
        metrics: this.metrics,
        mayReadMetrics: (t) =>
          this.tokens.authenticate(t) !== null || config.metricsTokens.some((m) => secretMatches(t, m.sha256)),
        endpoints: () => hubEndpoints(this.server.publicUrl, config.mqtts ? this.server.mqttsPort : null, config.relay.multiplex),
      }),
      log,
      onAuthenticated: (req) => this.server.authenticated(req.socket),
    });
    const connect = new StreamConnect({
      tokens: this.tokens,
      streams: this.streams,
      relay: this.relay,
      log,
      authFailure: () => this.metrics.authFailure('api'),
    });
    this.relayMux = config.relay.multiplex
      ? new RelayMux({
          relay: this.relay,
          registry: this.registry,
          tokens: this.tokens,
          streams: this.streams,
          maxTokenTtlSec: config.deviceAuth.maxTokenTtlSeconds,
          pingIntervalMs: config.relay.pingIntervalMs,
          log,
          events: { refused: (code, side) => code === 'UNAUTHORIZED' && this.metrics.authFailure(side === 'device' ? 'relay' : 'api') },
        })
      : null;
    this.server = new HubServer({
      config,
      api: this.api,
      relay: this.relay,
      relayMux: this.relayMux,
      connect,
      broker: this.broker,
      log,
      ...(opts.configFile !== undefined ? { configFile: opts.configFile } : {}),
      ...(opts.listenFlag ? { listenFlag: true } : {}),
    });
    const hubAccount =
      external && config.mqtt?.accounts === 'mosquitto-dynsec'
        ? [new MosquittoAccounts({ bus: external, registry: this.registry, username: config.mqtt.username, log })]
        : [];
    this.components = [this.registry, this.tokens, this.history, external ?? this.broker, ...hubAccount, presenceStore, this.presence, this.streams, ...(this.relayMux ? [this.relayMux] : []), this.relay, this.api, this.server];
  }

  /** The public https URL, with the real port once started. */
  get url(): URL {
    return this.server.publicUrl;
  }

  /** Starts every component in order; if one fails, everything started so far is stopped again. */
  async start(): Promise<void> {
    if (this.started.length > 0) return;
    for (const c of this.components) {
      this.started.push(c); // stop() is safe on a component whose start() failed half way
      try {
        await c.start();
      } catch (err) {
        await this.stop();
        throw err;
      }
    }
  }

  /** Stops in reverse order; idempotent. Open streams end with 1001 SHUTTING_DOWN. */
  async stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    if (this.started.length === 0) return;
    this.stopping = (async () => {
      const started = this.started.reverse();
      this.started = [];
      for (const c of started) {
        try {
          await c.stop();
        } catch (err) {
          this.log.error({ err: (err as Error).message }, 'component failed to stop cleanly');
        }
      }
      this.log.info('hub stopped');
    })();
    try {
      await this.stopping;
    } finally {
      this.stopping = null;
    }
  }
}

/** Builds and starts a hub. */
export async function startHub(opts: HubOptions): Promise<Hub> {
  const hub = new Hub(opts);
  await hub.start();
  return hub;
}
