import { apiErrorOf } from '../protocol/index.js';

/**
 * Why a control channel attempt failed, told so that the person at the device knows what to check:
 * the hub declined the WebSocket upgrade (a wrong URL path, say). Pure: the control channel logs
 * what these return, once per distinct cause. Nothing here ever includes the key or a token.
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
