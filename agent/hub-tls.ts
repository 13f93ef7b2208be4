import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { RELAY_MIN_TLS_VERSION } from '../protocol/index.js';

/**
 * The agent's TLS context for its hub, built once, on first use, and shared by the control channel
 * (every reconnect) and the relay (every stream): the system's roots plus the configured CA (an
 * extra trust anchor, never a replacement) and the cipher order (protocol/tls-ciphers.ts). With
 * neither, undefined: Node's defaults, whose root store Node builds once and shares anyway.
 *
 * Built per connection instead, as a `ca` option makes Node do, a context with the 119 roots and a
 * CA costs 5-8 ms of CPU here (x86, Node 24) and several times that on a small board, and 1.6 MB
 * while its connection lives.
 */
export function hubTlsContext(opts: { ca?: string | undefined; ciphers?: string | undefined }): () => SecureContext | undefined {
  const { ca, ciphers } = opts;
  if (ca === undefined && !ciphers) return () => undefined;
  let context: SecureContext | undefined;
  return () =>
    (context ??= createSecureContext({
      minVersion: RELAY_MIN_TLS_VERSION, // the oldest TLS the agent speaks to its hub, control channel included
      ...(ca !== undefined ? { ca: [...rootCertificates, ca] } : {}),
      ...(ciphers ? { ciphers } : {}),
    }));
}
