import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../protocol/index.js';
import type { ControlBus } from './control-bus.js';
import type { HistoryStore } from './history-store.js';
import { sendJson } from './http-util.js';

export const HEALTH_PATHS = { live: '/healthz', ready: '/readyz' } as const;

/** How long the broker may take to take a probe message before the hub counts as not ready. */
const PROBE_TIMEOUT_MS = 2000;

export interface Readiness {
  ready: boolean;
  checks: { broker: 'ok' | 'failing'; store: 'ok' | 'failing' };
}

/**
 * `/healthz` (the process answers) and `/readyz` (the broker takes a message and the stream
 * history can be written). Both answer without a token, for load balancers and orchestrators, so
 * they say only ok or failing; the reason goes to the log (once per distinct problem).
 */
export class Health {
  private readonly bus: ControlBus;
  private readonly store: HistoryStore;
  private readonly probeTopic: string;
  private readonly log: Logger;
  private lastProblem = '';

  constructor(opts: { bus: ControlBus; store: HistoryStore; nodeId: string; log: Logger }) {
    this.bus = opts.bus;
    this.store = opts.store;
    // Outside the device tree: no device may subscribe to it.
    this.probeTopic = `devstreams/v1/hubs/${opts.nodeId}/health`;
    this.log = opts.log.child({ component: 'health' });
  }

  /** Serves /healthz and /readyz; false for any other path. */
  handle(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (path !== HEALTH_PATHS.live && path !== HEALTH_PATHS.ready) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: { code: 'BAD_REQUEST', status: 405, reason: 'use GET' } });
      return true;
    }
    if (path === HEALTH_PATHS.live) {
      sendJson(res, 200, { status: 'ok' });
      return true;
    }
    void this.readiness().then(
      (r) => sendJson(res, r.ready ? 200 : 503, r),
      () => sendJson(res, 503, { ready: false }),
    );
    return true;
  }

  async readiness(): Promise<Readiness> {
    const [broker, store] = await Promise.all([this.brokerProblem(), this.store.problem().catch((e: Error) => e.message)]);
    const problem = [broker && `broker: ${broker}`, store && `store: ${store}`].filter(Boolean).join('; ');
    if (problem && problem !== this.lastProblem) this.log.warn({ problem }, 'hub not ready');
    if (!problem && this.lastProblem) this.log.info('hub ready again');
    this.lastProblem = problem;
    return { ready: !problem, checks: { broker: broker ? 'failing' : 'ok', store: store ? 'failing' : 'ok' } };
  }

  private async brokerProblem(): Promise<string | null> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.bus.publish(this.probeTopic, '', { qos: 0 }),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
        }),
      ]);
      return null;
    } catch (err) {
      return (err as Error).message;
    } finally {
      clearTimeout(timer);
    }
  }
}
