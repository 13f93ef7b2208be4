/**
 * The `debug` package's traces that print secrets, left out of whatever DEBUG asks for: mqtt.js
 * (`mqttjs:client` prints each packet it writes, the CONNECT password among them: the device's
 * token, or its key with `hub.auth: key`), mqtt-packet (every string it writes, the password again,
 * and every stream request's single-use stream token) and https-proxy-agent (the proxy's request,
 * its credentials among them). The single executable replaces `debug` with one that is always off
 * (scripts/sea-shims/debug.cjs); this is the same promise for the program run from a checkout, where
 * the other namespaces (aedes', ws') still trace. It must run before those packages load: `debug`
 * reads DEBUG once, when first loaded.
 */
export const SECRET_TRACES = ['mqttjs*', 'mqtt-packet*', 'https-proxy-agent*'] as const;

/** DEBUG with the secret-printing namespaces excluded, or null when DEBUG asks for nothing. */
export function withoutSecretTraces(debug: string | undefined): string | null {
  if (!debug || debug.trim() === '') return null;
  return [debug, ...SECRET_TRACES.map((ns) => `-${ns}`)].join(',');
}

/** Applies withoutSecretTraces to process.env.DEBUG; returns the note to print, or null. */
export function keepSecretsOutOfDebug(env: NodeJS.ProcessEnv = process.env): string | null {
  const safe = withoutSecretTraces(env.DEBUG);
  if (safe === null) return null;
  env.DEBUG = safe;
  return `devstreams: DEBUG: the traces of ${SECRET_TRACES.join(', ')} are left out: they print passwords and stream tokens\n`;
}
