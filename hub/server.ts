import { constants as cryptoConstants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { DEFAULT_CIPHERS, createServer as createTlsServer } from 'node:tls';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { ConfigError, apiPaths, coalesceCorkedWrites, type Logger } from '../protocol/index.js';
import type { Api } from './api.js';
import type { Broker } from './broker.js';
import { parseHostPort, publicUrlOf, type HubConfig } from './config.js';
import { ConnectionGuard } from './connection-guard.js';
import { listenProblem } from './listen-error.js';
import { checkTlsPair } from './tls-files.js';
import { answerClientError } from './client-error.js';
import { peerAddress, refuseUpgrade } from './http-util.js';
import { MqttPacketGuard } from './mqtt-packet-guard.js';
import type { Relay } from './relay.js';
import type { RelayMux } from './relay-mux.js';
import type { StreamConnect } from './stream-connect.js';
import { upgradeProblem } from './upgrade-check.js';

type ServerConfig = Pick<HubConfig, 'listen' | 'publicUrl' | 'tls' | 'mqtts' | 'limits'>;

/** Where a listen address was set: a field of the config file, or a command-line flag. */
interface ListenSource {
  field: string;
  file?: string;
}

/** Largest WebSocket message on the MQTT endpoint (control payloads are at most 8 KiB). */
const MQTT_WS_MAX_PAYLOAD = 64 * 1024;
/** Connections still open this long after stop() are cut. */
const FORCE_CLOSE_MS = 3000;
/**
 * The hub's order: AES-128-GCM first, cheaper than the default AES-256 (PERFORMANCE-NOTES) and
 * equally fine here. With PrioritizeChaCha, a client that lists ChaCha20-Poly1305 first gets it: a
 * device whose CPU has no AES instructions asks for it (protocol/tls-ciphers.ts), and there it costs
 * a third to a quarter of AES-GCM's CPU; on the hub's own CPU the two cost about the same.
 */
const CIPHERS = `TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:${DEFAULT_CIPHERS}`;

/**
 * The hub's one TLS port: the REST API, relay upgrades, and MQTT over WebSocket at /mqtt; plus,
 * when configured, MQTT over TLS on a second port.
 */
export class HubServer {
  private readonly config: ServerConfig;
  private readonly configFile: string | undefined;
  private readonly listenFrom: ListenSource;
  private readonly api: Api;
  private readonly connect: StreamConnect;
  private readonly relay: Relay;
  private readonly relayMux: RelayMux | null;
  private readonly broker: Broker;
  private readonly log: Logger;
  private readonly mqttWss: WebSocketServer;
  /** Slowloris and per-address limits on connections that have not authenticated yet. */
  readonly guard: ConnectionGuard;
  /** The socket under each MQTT connection handed to the broker (to mark it authenticated). */
  private readonly mqttSockets = new WeakMap<Duplex, Socket>();
  private https: HttpsServer | null = null;
  private mqtts: NetServer | null = null;
  private readonly sockets = new Set<Socket>();
  private url: URL | null = null;
  private boundPort = 0;
  private mqttsBoundPort = 0;

  constructor(opts: {
    config: ServerConfig;
    api: Api;
    relay: Relay;
    /** Devices' multiplexed connections, when offered. */
    relayMux?: RelayMux | null;
    /** The open-and-connect upgrade (service token; joins the stream it opens). */
    connect: StreamConnect;
    broker: Broker;
    log: Logger;
    /** The hub.yaml the config came from, for errors (hub/cli.ts passes it). */
    configFile?: string;
    /** `listen` came from the --listen flag, not the file. */
    listenFlag?: boolean;
  }) {
    this.config = opts.config;
    this.configFile = opts.configFile;
    this.listenFrom = opts.listenFlag
      ? { field: '--listen' }
      : { field: 'listen', ...(opts.configFile !== undefined ? { file: opts.configFile } : {}) };
    this.api = opts.api;
    this.relay = opts.relay;
    this.relayMux = opts.relayMux ?? null;
    this.connect = opts.connect;
    this.broker = opts.broker;
    this.log = opts.log.child({ component: 'server' });
    const { limits } = opts.config;
    // The guard fires a little after Node's headers deadline (which counts from the end of the TLS
    // handshake and is checked every checkingIntervalMs), so that a request whose headers are not in
    // by then gets its 408 (hub/client-error.ts) before the guard cuts the connection without a word.
    const authMs = limits.authTimeoutMs;
    this.guard = new ConnectionGuard({ maxPerAddress: limits.unauthenticatedPerAddress, authTimeoutMs: authMs + 2 * checkingIntervalMs(authMs), log: opts.log });
    this.mqttWss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: Math.max(MQTT_WS_MAX_PAYLOAD, limits.mqttMaxPacketBytes),
      clientTracking: false,
      handleProtocols: (offered) => (offered.has('mqtt') ? 'mqtt' : offered.has('mqttv3.1') ? 'mqttv3.1' : false),
    });
  }

  /** The connection under this socket has authenticated (a valid service token, stream token or device login). */
  authenticated(socket: Socket): void {
    this.guard.authenticated(socket);
  }

  /** The URL devices and services use (the real port once listening). */
  get publicUrl(): URL {
    return this.url ?? publicUrlOf(this.config);
  }

  get port(): number {
    return this.boundPort;
  }

  get mqttsPort(): number {
    return this.mqttsBoundPort;
  }

  async start(): Promise<void> {
    if (this.https) return;
    const authMs = this.config.limits.authTimeoutMs;
    const cert = readPem(this.config.tls.cert, 'TLS certificate');
    const key = readPem(this.config.tls.key, 'TLS key');
    checkTlsPair({ file: this.config.tls.cert, pem: cert }, { file: this.config.tls.key, pem: key });
    const tlsOptions = {
      cert,
      key,
      minVersion: 'TLSv1.2' as const,
      ciphers: CIPHERS,
      honorCipherOrder: true,
      secureOptions: cryptoConstants.SSL_OP_PRIORITIZE_CHACHA,
      handshakeTimeout: authMs,
    };
    const httpOptions = {
      headersTimeout: authMs,
      requestTimeout: 2 * authMs,
      connectionsCheckingInterval: checkingIntervalMs(authMs),
    };
    let server: HttpsServer;
    try {
      server = createHttpsServer({ ...tlsOptions, ...httpOptions }, (req, res) => this.api.handle(req, res));
    } catch (err) {
      throw new ConfigError(this.config.tls.cert, [`TLS certificate or key unusable (${(err as Error).message})`]);
    }
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket));
    this.track(server);
    this.https = server;
    const listen = parseHostPort(this.config.listen)!;
    this.boundPort = await listenOn(server, listen.host, listen.port, this.listenFrom);
    this.url = publicUrlOf(this.config, this.boundPort);

    if (this.config.mqtts) {
      // noDelay: MQTT packets are small and latency-bound (a stream request, a PUBACK); with Nagle a
      // packet written while the previous one is unacknowledged waits for the device's delayed ACK.
      const mqtts = createTlsServer({ ...tlsOptions, noDelay: true }, (socket) => this.handleMqtt(socket, socket));
      this.track(mqtts);
      this.mqtts = mqtts;
      const at = parseHostPort(this.config.mqtts.listen)!;
      this.mqttsBoundPort = await listenOn(mqtts, at.host, at.port, { field: 'mqtts.listen', ...(this.configFile !== undefined ? { file: this.configFile } : {}) });
      this.log.info({ host: at.host, port: this.mqttsBoundPort }, 'mqtts listening');
    }
    if (this.broker.running) this.broker.aedes.on('clientReady', (client) => {
      const socket = this.mqttSockets.get(client.conn as unknown as Duplex);
      if (socket) this.guard.authenticated(socket);
    });
    this.log.info({ url: this.url.origin, host: listen.host, port: this.boundPort }, 'hub listening');
  }

  /** Stops accepting connections; the relay and the broker close theirs next; stragglers are cut after 3 s. */
  async stop(): Promise<void> {
    const servers = [this.https, this.mqtts].filter((s): s is NetServer => s !== null);
    this.https = null;
    this.mqtts = null;
    this.guard.stop();
    for (const s of servers) s.close();
    if (servers.length === 0) return;
    for (const s of servers) (s as Partial<HttpsServer>).closeIdleConnections?.();
    setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, FORCE_CLOSE_MS).unref();
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {}); // a reset during the upgrade must not crash the hub
    const path = (req.url ?? '').split('?')[0];
    if (path === apiPaths.mqtt) {
      const problem = upgradeProblem(req);
      if (problem) return refuseUpgrade(socket, 'BAD_REQUEST', problem);
      this.mqttWss.handleUpgrade(req, socket, head, (ws) => {
        const stream = createWebSocketStream(ws);
        stream.on('error', () => stream.destroy());
        this.handleMqtt(stream, req.socket, req);
      });
      return;
    }
    if (this.relay.handleUpgrade(req, socket, head, () => this.guard.authenticated(req.socket))) return;
    if (this.relayMux?.handleUpgrade(req, socket, head, () => this.guard.authenticated(req.socket))) return;
    if (this.connect.handleUpgrade(req, socket, head, () => this.guard.authenticated(req.socket))) return;
    refuseUpgrade(socket, 'NOT_FOUND', `no WebSocket endpoint at ${String(path).slice(0, 200)}`);
  }

  /** Hands one MQTT connection to the broker behind a packet size check; `socket` is the TCP/TLS socket under it. */
  private handleMqtt(stream: Duplex, socket: Socket, req?: IncomingMessage): void {
    const guarded = new MqttPacketGuard(stream, {
      maxPacketBytes: this.config.limits.mqttMaxPacketBytes,
      onOversize: (why) => this.log.warn({ address: socket.remoteAddress, why }, 'mqtt connection closed (limits.mqttMaxPacketBytes)'),
    });
    guarded.on('error', () => guarded.destroy());
    coalesceCorkedWrites(guarded); // one WebSocket frame per MQTT packet, not one per piece
    this.mqttSockets.set(guarded, socket);
    this.broker.handle(guarded, req, peerAddress(socket));
  }

  private track(server: NetServer): void {
    server.on('connection', (socket: Socket) => {
      if (!this.guard.admit(socket)) return;
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('tlsClientError', (err: Error) => this.log.debug({ err: err.message }, 'TLS handshake failed'));
  }
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read the ${what} (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
}

/**
 * Listens; a failure is a ConfigError naming where the address was set (`from`: the config file or
 * the --listen flag, and the field) and what to do about the common causes (hub/listen-error.ts).
 */
function listenOn(server: NetServer, host: string, port: number, from: ListenSource): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      if (from.file === undefined) reject(new ConfigError(from.field, [listenProblem(err, host, port, from.field)]));
      else reject(new ConfigError(from.file, [`${from.field}: ${listenProblem(err, host, port, `${from.field} in ${from.file}`)}`]));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** How often Node checks the headers and request deadlines (its default, 30 s, would be far too coarse). */
function checkingIntervalMs(authMs: number): number {
  return Math.min(1000, Math.max(100, Math.floor(authMs / 4)));
}
