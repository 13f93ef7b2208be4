import type { Agent } from 'node:http';
import { HttpsProxyAgent } from 'https-proxy-agent';
import type { Logger } from '../protocol/index.js';

/**
 * Outbound through an HTTP proxy by CONNECT, for the hub connections (MQTT over WebSocket and the
 * stream WebSockets). The setting comes from the agent config (`hub.proxy`, which wins) or from the
 * HTTPS_PROXY / NO_PROXY environment that the CLI reads once at start-up.
 */
export interface ProxyEnv {
  /** HTTPS_PROXY (or https_proxy) as found at start-up. */
  httpsProxy?: string | undefined;
  /** NO_PROXY (or no_proxy) as found at start-up. */
  noProxy?: string | undefined;
}

/** Reads the proxy variables (upper case first, as curl does for HTTPS_PROXY). */
export function proxyEnvFrom(env: NodeJS.ProcessEnv): ProxyEnv {
  const pick = (a: string, b: string): string | undefined => {
    const v = env[a] ?? env[b];
    return v !== undefined && v.trim() !== '' ? v.trim() : undefined;
  };
  return { httpsProxy: pick('HTTPS_PROXY', 'https_proxy'), noProxy: pick('NO_PROXY', 'no_proxy') };
}

/** Why a proxy URL is unusable, or null: http://[user:pass@]HOST:PORT only. */
export function proxyUrlProblem(s: string): string | null {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return 'must be a URL like http://proxy.example.com:3128';
  }
  if (u.protocol !== 'http:') return `scheme must be http: (got ${u.protocol})`;
  if (!u.hostname) return 'must name a host';
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) return 'must have no path, query or fragment';
  return null;
}

/**
 * The proxy to use for `target` (a hub URL), or undefined for a direct connection. `configured` is
 * the config's `hub.proxy`: a URL wins over the environment, `"none"` turns the proxy off.
 * NO_PROXY: comma-separated host names (a leading "." or "*." matches sub-domains; a plain name
 * matches itself and its sub-domains, as curl does), optional `:PORT`, or `*` for everything.
 */
export function proxyFor(target: URL, configured: string | undefined, env: ProxyEnv): string | undefined {
  if (configured === 'none') return undefined;
  if (configured !== undefined) return configured;
  if (!env.httpsProxy) return undefined;
  if (env.noProxy && noProxyMatches(target, env.noProxy)) return undefined;
  return env.httpsProxy;
}

export function noProxyMatches(target: URL, noProxy: string): boolean {
  const host = target.hostname.replace(/^\[|\]$/g, '').toLowerCase().replace(/\.$/, '');
  const port = target.port || (target.protocol === 'wss:' || target.protocol === 'https:' ? '443' : '');
  for (const raw of noProxy.split(',')) {
    let entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    let entryPort: string | undefined;
    const m = /^(.*?)(?::(\d+))?$/.exec(entry.startsWith('[') ? entry.replace(/^\[(.*)\](.*)$/, '$1$2') : entry);
    if (m && m[2] !== undefined && !entry.includes('::')) {
      entry = m[1]!;
      entryPort = m[2];
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    entry = entry.replace(/^\*?\./, '').replace(/\.$/, '');
    if (host === entry || host.endsWith(`.${entry}`)) return true;
  }
  return false;
}

/**
 * An http.Agent that tunnels through `proxyUrl` by CONNECT (TLS to the hub runs inside the tunnel).
 * A proxy that answers the CONNECT with anything but 200 (407 credentials, 403 a port it does not
 * allow, 502 a hub it cannot reach) is logged on `log`: the WebSocket underneath reports that only as
 * an "unexpected server response", which the MQTT client drops without a word. Said once per
 * distinct answer (the control channel retries), again after a CONNECT that succeeded.
 */
export function proxyAgent(proxyUrl: string, log?: Logger): Agent {
  const agent = new HttpsProxyAgent(proxyUrl, { keepAlive: false });
  if (log) {
    let last: number | undefined;
    agent.on('proxyConnect', (res: { statusCode: number; statusText: string }) => {
      if (res.statusCode === 200) {
        last = undefined;
        return;
      }
      const fields = { proxy: redactProxy(proxyUrl), status: res.statusCode, statusText: String(res.statusText).slice(0, 100) };
      if (res.statusCode !== last) log.warn(fields, 'the proxy refused the CONNECT to the hub');
      else log.debug(fields, 'the proxy refused the CONNECT to the hub');
      last = res.statusCode;
    });
  }
  return agent;
}

/** The proxy URL without credentials, for logs. */
export function redactProxy(proxyUrl: string): string {
  const u = new URL(proxyUrl);
  u.username = '';
  u.password = '';
  return u.origin;
}
