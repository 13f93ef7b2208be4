import type { Agent } from 'node:http';
import { HttpsProxyAgent } from 'https-proxy-agent';
import type { ClientRequest } from 'node:http';
import { ConfigError, type Logger } from '../protocol/index.js';

/**
 * Outbound through an HTTP proxy by CONNECT, for the hub connections (MQTT over WebSocket and the
 * stream WebSockets). The setting comes from the agent config (`hub.proxy`, which wins) or from the
 * HTTPS_PROXY / NO_PROXY environment that the CLI reads once at start-up.
 */
export interface ProxyEnv {
  /** HTTPS_PROXY (or https_proxy) as found at start-up, unchecked (proxyFor checks it when it is used). */
  httpsProxy?: string | undefined;
  /** The variable httpsProxy came from, for errors: HTTPS_PROXY (the default) or https_proxy. */
  httpsProxyVar?: string | undefined;
  /** NO_PROXY (or no_proxy) as found at start-up. */
  noProxy?: string | undefined;
}

/** Reads the proxy variables (upper case first, as curl does for HTTPS_PROXY). */
export function proxyEnvFrom(env: NodeJS.ProcessEnv): ProxyEnv {
  const pick = (a: string, b: string): [string, string] | undefined => {
    const name = env[a] !== undefined ? a : b;
    const v = env[name];
    return v !== undefined && v.trim() !== '' ? [v.trim(), name] : undefined;
  };
  const https = pick('HTTPS_PROXY', 'https_proxy');
  return {
    ...(https ? { httpsProxy: https[0], httpsProxyVar: https[1] } : {}),
    noProxy: pick('NO_PROXY', 'no_proxy')?.[0],
  };
}

/**
 * An environment proxy value as curl takes it: without a scheme (`proxy:3128`,
 * `user:pw@proxy:3128`) it is `http://` + the value. A value with a scheme is left as it is, for
 * proxyUrlProblem to judge.
 */
export function withProxyScheme(value: string): string {
  return /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value) ? value : `http://${value}`;
}

/** Why a proxy URL is unusable, or null: http://[user:pass@]HOST:PORT only. */
export function proxyUrlProblem(s: string): string | null {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return 'must be a URL like http://proxy.example.com:3128';
  }
  if (u.protocol === 'https:') return 'scheme must be http: (got https:; the agent speaks plain HTTP to the proxy, and TLS to the hub inside the tunnel)';
  if (u.protocol !== 'http:') return `scheme must be http: (got ${u.protocol})`;
  if (!u.hostname) return 'must name a host';
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) return 'must have no path, query or fragment';
  return null;
}

/**
 * The proxy to use for `target` (a hub URL), or undefined for a direct connection. `configured` is
 * the config's `hub.proxy` (already checked by the config's schema): a URL wins over the
 * environment, `"none"` turns the proxy off. NO_PROXY: comma-separated host names (a leading "." or
 * "*." matches sub-domains; a plain name matches itself and its sub-domains, as curl does),
 * optional `:PORT`, or `*` for everything.
 *
 * HTTPS_PROXY is checked here, when it is the one used (withProxyScheme, then proxyUrlProblem): an
 * unusable value throws a ConfigError naming the variable, never the value (it may hold a
 * password), so the agent stops at start as for a bad `hub.proxy`. The environment is read once at
 * start, and a reload never changes the proxy, so this is the only place it is judged.
 */
export function proxyFor(target: URL, configured: string | undefined, env: ProxyEnv): string | undefined {
  if (configured === 'none') return undefined;
  if (configured !== undefined) return configured;
  if (!env.httpsProxy) return undefined;
  if (env.noProxy && noProxyMatches(target, env.noProxy)) return undefined;
  const url = withProxyScheme(env.httpsProxy);
  const problem = proxyUrlProblem(url);
  if (problem) {
    throw new ConfigError(env.httpsProxyVar ?? 'HTTPS_PROXY', [`${problem} (or set hub.proxy in the agent config, "none" for no proxy)`]);
  }
  return url;
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

/** What a proxy answered to a CONNECT that it refused. */
export interface ProxyRefusal {
  status: number;
  statusText: string;
}

/**
 * The requests whose CONNECT the proxy refused. https-proxy-agent then hands the proxy's answer to
 * the request as if it were the hub's, so a WebSocket sees "the server answered 401"; the control
 * channel asks here first (agent/control-ws.ts) and tells the proxy's refusal, not the hub's.
 */
const refusals = new WeakMap<ClientRequest, ProxyRefusal>();

/** The proxy's refusal of the CONNECT under `req`, or undefined when no proxy refused it. */
export function proxyRefusalOf(req: ClientRequest): ProxyRefusal | undefined {
  return refusals.get(req);
}

/** A proxy's status text in a log line: bounded, printable ASCII. */
function printableText(s: string): string {
  return s.slice(0, 100).replace(/[^\x20-\x7e]/g, '?');
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
  agent.on('proxyConnect', (res: { statusCode: number; statusText: string }, req: ClientRequest) => {
    if (res.statusCode !== 200) refusals.set(req, { status: res.statusCode, statusText: printableText(String(res.statusText)) });
  });
  if (log) {
    let last: number | undefined;
    agent.on('proxyConnect', (res: { statusCode: number; statusText: string }) => {
      if (res.statusCode === 200) {
        last = undefined;
        return;
      }
      const fields = { proxy: redactProxy(proxyUrl), status: res.statusCode, statusText: printableText(String(res.statusText)) };
      if (res.statusCode !== last) log.warn(fields, 'the proxy refused the CONNECT to the hub');
      else log.debug(fields, 'the proxy refused the CONNECT to the hub');
      last = res.statusCode;
    });
  }
  return agent;
}

/**
 * The proxy URL without credentials, for logs: scheme, host and port. Only http: URLs get here
 * (proxyFor and the config check them); built from the parts, not URL.origin, which is "null" for
 * a scheme that is not special.
 */
export function redactProxy(proxyUrl: string): string {
  const u = new URL(proxyUrl);
  return `${u.protocol}//${u.host}`;
}
