import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { STREAM_RESULTS, type StreamRecord } from '../protocol/index.js';

/** Where an authentication failure happened. */
export const AUTH_ENDPOINTS = ['api', 'relay', 'mqtt', 'metrics'] as const;
export type AuthEndpoint = (typeof AUTH_ENDPOINTS)[number];

/**
 * The hub's Prometheus metrics (README "Observe the fleet" lists them). Counters move as streams
 * end (the stream log's records), as streams pair (set-up time) and as credentials are refused;
 * gauges are read when scraped. One registry per hub, so several hubs in one process stay apart.
 */
export class HubMetrics {
  readonly registry = new Registry();
  private readonly streams: Counter<'result'>;
  private readonly bytes: Counter<'direction'>;
  private readonly handshakeTimeouts: Counter<'stage'>;
  private readonly authFailures: Counter<'endpoint'>;
  private readonly setup: Histogram;

  constructor(opts: {
    devicesOnline: () => number;
    streamsOpen: () => number;
    /** Multiplexed connections open now, by side (docs/MULTIPLEXING.md). */
    muxConnections?: () => { device: number; service: number };
    processMetrics?: boolean;
  }) {
    const registers = [this.registry];
    new Gauge({
      name: 'devstreams_hub_devices_online',
      help: 'Devices whose control channel is connected to this hub.',
      registers,
      collect() {
        this.set(opts.devicesOnline());
      },
    });
    new Gauge({
      name: 'devstreams_hub_streams_open',
      help: 'Streams accepted by their device and not yet ended (waiting for both sides, or relaying).',
      registers,
      collect() {
        this.set(opts.streamsOpen());
      },
    });
    new Gauge({
      name: 'devstreams_hub_mux_connections',
      help: 'Multiplexed connections open: agents (side="device") and service clients (side="service").',
      labelNames: ['side'],
      registers,
      collect() {
        const n = opts.muxConnections?.() ?? { device: 0, service: 0 };
        this.set({ side: 'device' }, n.device);
        this.set({ side: 'service' }, n.service);
      },
    });
    this.streams = new Counter({
      name: 'devstreams_hub_streams_total',
      help: 'Stream requests by how they ended: ok, refused (by the device, or by the hub once the service token was valid), timeout (no answer), unpaired, error.',
      labelNames: ['result'],
      registers,
    });
    for (const result of STREAM_RESULTS) this.streams.inc({ result }, 0);
    this.setup = new Histogram({
      name: 'devstreams_hub_stream_setup_seconds',
      help: 'Time from the API request to both sides connected at the relay, for streams that paired.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.bytes = new Counter({
      name: 'devstreams_hub_relayed_bytes_total',
      help: 'Bytes relayed, counted when each stream ends; direction to_device or from_device.',
      labelNames: ['direction'],
      registers,
    });
    for (const direction of ['to_device', 'from_device']) this.bytes.inc({ direction }, 0);
    this.handshakeTimeouts = new Counter({
      name: 'devstreams_hub_handshake_timeouts_total',
      help: 'Handshakes that ran out of time: stage device (no answer to the request) or relay (a side never connected).',
      labelNames: ['stage'],
      registers,
    });
    for (const stage of ['device', 'relay']) this.handshakeTimeouts.inc({ stage }, 0);
    this.authFailures = new Counter({
      name: 'devstreams_hub_auth_failures_total',
      help: 'Refused credentials: endpoint api (service token), relay (stream token), mqtt (device), metrics.',
      labelNames: ['endpoint'],
      registers,
    });
    for (const endpoint of AUTH_ENDPOINTS) this.authFailures.inc({ endpoint }, 0);
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'devstreams_hub_' });
  }

  /** A stream's record (the stream log calls this for every stream that ends). */
  streamEnded(r: StreamRecord): void {
    this.streams.inc({ result: r.result });
    if (r.bytesToDevice > 0) this.bytes.inc({ direction: 'to_device' }, r.bytesToDevice);
    if (r.bytesFromDevice > 0) this.bytes.inc({ direction: 'from_device' }, r.bytesFromDevice);
    if (r.code === 'DEVICE_TIMEOUT') this.handshakeTimeouts.inc({ stage: 'device' });
    if (r.result === 'unpaired' && r.code === 'STREAM_EXPIRED') this.handshakeTimeouts.inc({ stage: 'relay' });
  }

  /** A stream request refused for its token's rate: counted as refused, though it has no record (hub/hub-refusals.ts). */
  streamRequestOverRate(): void {
    this.streams.inc({ result: 'refused' });
  }

  /** Both sides of a stream reached the relay, `setupMs` after the API request. */
  streamPaired(setupMs: number): void {
    this.setup.observe(Math.max(0, setupMs) / 1000);
  }

  authFailure(endpoint: AuthEndpoint): void {
    this.authFailures.inc({ endpoint });
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
