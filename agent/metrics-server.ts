import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, isLoopbackHost, type Logger } from '../protocol/index.js';
import type { AgentMetrics } from './metrics-registry.js';

/**
 * The agent's optional metrics listener: plain HTTP `GET /metrics` on a local address (the config
 * refuses a non-loopback address unless `metrics.allowNonLoopback`; checked again here). No
 * authentication: whoever can reach a loopback port is already on the device.
 */
export class MetricsServer {
  private readonly listen: string;
  private readonly allowNonLoopback: boolean;
  private readonly metrics: AgentMetrics;
  private readonly log: Logger;
  private server: Server | null = null;
  private boundPort = 0;

  constructor(opts: { listen: string; allowNonLoopback: boolean; metrics: AgentMetrics; log: Logger }) {
    this.listen = opts.listen;
    this.allowNonLoopback = opts.allowNonLoopback;
    this.metrics = opts.metrics;
    this.log = opts.log.child({ component: 'metrics' });
  }

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(this.listen);
    const host = m?.[1] ?? m?.[2];
    const port = Number(m?.[3]);
    if (!host || !(port >= 0 && port <= 65535)) throw new ConfigError('metrics.listen', [`"${this.listen}" must be HOST:PORT`]);
    if (!this.allowNonLoopback && !isLoopbackHost(host)) {
      throw new ConfigError('metrics.listen', [`${host} is not a loopback address (set metrics.allowNonLoopback: true to allow it)`]);
    }
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
        return;
      }
      this.metrics.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(req.method === 'HEAD' ? undefined : body),
        () => res.writeHead(500).end(),
      );
    });
    this.server = server;
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new ConfigError('metrics.listen', [`cannot listen on ${this.listen} (${err.code ?? err.message})`])),
      );
      server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
    });
    this.log.info({ host, port: this.boundPort }, 'agent metrics listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
