import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The agent's Prometheus metrics (README "Observe the fleet"), served by metrics-server.ts when
 * `metrics.listen` is set: stream requests by answer code, bytes each way, control-channel
 * reconnects and the time of the last connect.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly streams: Counter<'code'>;
  private readonly bytes: Counter<'direction'>;
  private readonly reconnects: Counter;
  private readonly lastConnected: Gauge;
  private readonly connectedGauge: Gauge;
  private connects = 0;

  constructor(opts: { openStreams: () => number }) {
    const registers = [this.registry];
    this.streams = new Counter({
      name: 'devstreams_agent_stream_requests_total',
      help: 'Stream requests answered, by code: OK, or the refusal (SERVICE_DENIED, TARGET_UNREACHABLE, ...).',
      labelNames: ['code'],
      registers,
    });
    this.streams.inc({ code: 'OK' }, 0);
    this.bytes = new Counter({
      name: 'devstreams_agent_stream_bytes_total',
      help: 'Bytes carried by ended streams; direction to_target (from the service) or from_target.',
      labelNames: ['direction'],
      registers,
    });
    for (const direction of ['to_target', 'from_target']) this.bytes.inc({ direction }, 0);
    this.reconnects = new Counter({
      name: 'devstreams_agent_control_reconnects_total',
      help: 'Times the control channel connected again after its first connect.',
      registers,
    });
    this.lastConnected = new Gauge({
      name: 'devstreams_agent_control_last_connected_seconds',
      help: 'Unix time of the last control-channel connect (0: never connected).',
      registers,
    });
    this.connectedGauge = new Gauge({
      name: 'devstreams_agent_control_connected',
      help: '1 while the control channel is connected, else 0.',
      registers,
    });
    new Gauge({
      name: 'devstreams_agent_streams_open',
      help: 'Streams being set up or open.',
      registers,
      collect() {
        this.set(opts.openStreams());
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'devstreams_agent_' });
  }

  answered(code: string): void {
    this.streams.inc({ code });
  }

  streamEnded(bytesToTarget: number, bytesFromTarget: number): void {
    if (bytesToTarget > 0) this.bytes.inc({ direction: 'to_target' }, bytesToTarget);
    if (bytesFromTarget > 0) this.bytes.inc({ direction: 'from_target' }, bytesFromTarget);
  }

  connected(): void {
    if (this.connects++ > 0) this.reconnects.inc();
    this.lastConnected.set(Date.now() / 1000);
    this.connectedGauge.set(1);
  }

  disconnected(): void {
    this.connectedGauge.set(0);
  }
}
