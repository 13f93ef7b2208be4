import { apiErrorOf, isTlsTrustError, withoutNodeAdvice } from '../protocol/index.js';

/**
 * Why a control channel attempt failed, told so that the person at the device knows what to check:
 * the hub declined the WebSocket upgrade (a wrong URL path, say), or the broker refused the login
 * (CONNACK return code). Pure: the control channel logs what these return, once per distinct cause.
 * Nothing here ever includes the key or a token.
 */
export interface ConnectFailure {
  /** Equal for the same cause: the channel logs a cause once, and again only when it changes. */
  key: string;
  /** The log line's fields: `err` (one sentence), the codes, and a `hint` when there is one. */
  fields: Record<string, string | number>;
}

/** The most of the hub's reason (or a Location header) that goes into a log line. */
const MAX_ECHO = 200;

/** Text from the network echoed in a log line: bounded, one line, printable ASCII only. */
export function printable(s: string, max = MAX_ECHO): string {
  const cut = s.length > max ? `${s.slice(0, max)}...` : s;
  return cut.replace(/[^\x20-\x7e]/g, '?');
}

/** The control channel's path on a devstreams hub (hub/server.ts, apiPaths.mqtt). */
const HUB_MQTT_PATH = '/mqtt';

/**
 * The hub (or something in front of it) answered the control channel's WebSocket upgrade with an
 * HTTP status instead of switching protocols. `body` is already bounded (protocol/ws-dial.ts
 * readRefusalBody); it is read as a devstreams error only when it has the protocol's error shape.
 */
export function upgradeRefused(hubUrl: string, status: number, body: Buffer, location?: string): ConnectFailure {
  const error = apiErrorOf(body);
  const fields: Record<string, string | number> = { status };
  if (error) {
    fields.code = error.code;
    fields.reason = printable(error.reason);
  }
  fields.err = `hub answered the WebSocket upgrade with HTTP ${status}${error ? ` ${error.code}: ${fields.reason}` : ''}`;
  const hint = upgradeHint(hubUrl, status, location);
  if (hint) fields.hint = hint;
  return { key: `upgrade ${status} ${error?.code ?? ''}`, fields };
}

function upgradeHint(hubUrl: string, status: number, location: string | undefined): string | undefined {
  let url: URL;
  try {
    url = new URL(hubUrl);
  } catch {
    return undefined;
  }
  if (status === 404 && url.pathname !== HUB_MQTT_PATH) {
    const fixed = new URL(url.href);
    fixed.pathname = HUB_MQTT_PATH;
    return `hub.url's path is ${printable(url.pathname, 100)} but a devstreams hub serves its control channel at ${HUB_MQTT_PATH}: set hub.url to ${fixed.href}`;
  }
  if (status === 404) {
    return `nothing serves ${HUB_MQTT_PATH} at ${url.host}: check hub.url's host and port (a hub that uses an external MQTT broker has no ${HUB_MQTT_PATH}; point hub.url at the broker)`;
  }
  if (status >= 300 && status < 400) {
    return `redirects are not followed${location ? ` (this one goes to ${printable(location)})` : ''}: put the final address in hub.url`;
  }
  return undefined;
}

/**
 * The HTTP proxy answered the CONNECT to the hub with `status` (not 200): the hub was not reached,
 * so nothing about the hub is to blame. `proxy` is the proxy's address without credentials.
 */
export function proxyRefused(proxy: string, hubUrl: string, status: number, statusText: string): ConnectFailure {
  let hubAddr = '';
  try {
    const u = new URL(hubUrl);
    hubAddr = `${u.hostname}:${u.port || '443'}`;
  } catch {
    // the config's check makes this unreachable; the line just names no address
  }
  const fields: Record<string, string | number> = {
    proxy,
    status,
    err: `the proxy refused the CONNECT to the hub${hubAddr ? ` (${hubAddr})` : ''} with HTTP ${status}${statusText ? ` ${statusText}` : ''}; the hub was not reached`,
  };
  const hint = proxyHint(status, hubAddr);
  if (hint) fields.hint = hint;
  return { key: `proxy ${status}`, fields };
}

function proxyHint(status: number, hubAddr: string): string | undefined {
  if (status === 401 || status === 407) {
    return 'the proxy wants (other) credentials: put user:password in hub.proxy or HTTPS_PROXY (http://USER:PASSWORD@HOST:PORT, percent-encoded)';
  }
  if (status === 403) {
    return `the proxy does not allow a CONNECT to ${hubAddr || "the hub's port"} (or from this device): ask for it to be allowed (tinyproxy: ConnectPort; squid: SSL_ports), or set hub.proxy: none if the hub can be reached directly`;
  }
  if (status >= 500) return `the proxy could not reach ${hubAddr || 'the hub'}: check hub.url's host and port, and the proxy's own DNS and network`;
  return undefined;
}

/**
 * The proxy itself could not be reached (refused, timed out, its name not found): with a proxy the
 * agent opens TCP connections to the proxy only, so such an error is never the hub's.
 */
export function proxyUnreachable(proxy: string, err: Error & { code?: string | number }): ConnectFailure {
  const message = withoutNodeAdvice(err.message);
  const fields: Record<string, string | number> = {
    proxy,
    err: `cannot reach the proxy ${proxy}: ${message}`,
    ...(err.code !== undefined ? { code: err.code } : {}),
    hint: 'check the proxy address in hub.proxy or HTTPS_PROXY (host and port), and that the proxy is running; hub.proxy: none dials the hub directly',
  };
  return { key: `proxy ${err.code ?? ''} ${message}`, fields };
}

/**
 * An mqtts:// hub URL whose server answered in HTTP (its first bytes were `HTTP/`): the hub's HTTPS
 * port, not an MQTT one. MQTT.js reads the HTTP status line as packets and fails with a parse error
 * ("Invalid header flag bits ... puback"), which says nothing about the cause.
 */
export function mqttsAnsweredHttp(hubUrl: string): ConnectFailure {
  let host = '';
  let port = '';
  try {
    const u = new URL(hubUrl);
    host = u.hostname.includes(':') ? `[${u.hostname}]` : u.hostname;
    port = u.port || '8883';
  } catch {
    // hub.url was checked at load; the line just names no address
  }
  return {
    key: 'mqtts answered http',
    fields: {
      err: `the server at ${host}:${port} answered in HTTP, not MQTT: hub.url is an mqtts:// URL pointed at an HTTPS port`,
      hint: `use wss://${host}:${port}/mqtt (the hub's control channel on its HTTPS port), or enable mqtts on the hub (mqtts.listen in hub.yaml) and point hub.url at that port`,
    },
  };
}

/** MQTT 3.1.1 CONNACK return codes (section 3.2.2.3). */
const CONNACK = {
  1: 'unacceptable protocol version',
  2: 'identifier rejected',
  3: 'server unavailable',
  4: 'bad username or password',
  5: 'not authorized',
} as const satisfies Record<number, string>;

/**
 * The broker refused the CONNECT with `returnCode` (compared as a code, never by mqtt.js's message).
 * A devstreams hub answers 4 for an unknown device id or a key that does not match (it does not say
 * which, on purpose) and 5 for a disabled device; an external broker may answer 5 for either.
 */
export function loginRefused(returnCode: number, d: { deviceId: string; auth: 'token' | 'key'; keyFileChanged?: string }): ConnectFailure {
  const what = (CONNACK as Record<number, string>)[returnCode] ?? `return code ${returnCode}`;
  const fields: Record<string, string | number> = {
    code: returnCode,
    err: `hub refused device ${d.deviceId}: ${what}`,
  };
  const hint = loginHint(returnCode, d);
  if (hint) fields.hint = hint;
  return { key: `connack ${returnCode}${d.keyFileChanged ? ' keyFile changed' : ''}`, fields };
}

function loginHint(returnCode: number, d: { deviceId: string; auth: 'token' | 'key'; keyFileChanged?: string }): string | undefined {
  switch (returnCode) {
    case 4:
      // A key rotated on disk (hub rotate-key, the new key copied) but never reloaded: the likely cause.
      if (d.keyFileChanged) {
        return `hub.keyFile ${d.keyFileChanged} changed since the agent read it: reload the agent (systemctl reload devstreams-agent, or kill -HUP its pid) to use the key it holds now`;
      }
      return (
        `the hub does not know device ${d.deviceId} (never added, or removed), or its key does not match: ` +
        'check hub.deviceId and hub.keyFile against the hub (devstreams hub add-device, rotate-key)' +
        (d.auth === 'token'
          ? '; a device clock far off also fails (device tokens carry an expiry)'
          : '; or the hub does not accept static keys (hub deviceAuth.allowStaticKeys: false; use auth: token)')
      );
    case 5:
      return (
        `device ${d.deviceId} may be disabled on the hub (devstreams hub enable-device ${d.deviceId}); ` +
        'with an external broker, its account may be missing or not allowed'
      );
    case 2:
      return `the broker does not accept hub.deviceId (${d.deviceId}) as its client id`;
    case 1:
      return 'the broker does not speak MQTT 3.1.1';
    default:
      return undefined;
  }
}

/**
 * Any other error of an attempt (connection refused, DNS, TLS): its message, without Node 24's advice
 * about its own flags, which the executable's users cannot follow; for a certificate this side does
 * not trust, a hint naming the setting that decides it.
 */
export function transportFailed(err: Error & { code?: string | number }): ConnectFailure {
  const message = withoutNodeAdvice(err.message);
  const fields: Record<string, string | number> = { err: message, ...(err.code !== undefined ? { code: err.code } : {}) };
  if (isTlsTrustError(err)) {
    fields.hint = "the hub's certificate does not chain to a CA this agent trusts: is hub.ca the hub's CA (its ca.crt)? Besides hub.ca, the agent trusts only the public CAs Node carries";
  }
  return { key: `${err.code ?? ''} ${message}`, fields };
}
