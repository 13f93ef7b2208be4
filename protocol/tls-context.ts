import { createSecureContext, type SecureContext } from 'node:tls';
import { RELAY_MIN_TLS_VERSION } from './ws-dial.js';

/** What a client's connections to the hub trust and ask for: the trust anchors, the cipher order. */
export interface ClientTlsSettings {
  ca?: string | Buffer | Array<string | Buffer> | undefined;
  /** The `ciphers` option (protocol/tls-ciphers.ts clientCiphers), or undefined for Node's order. */
  ciphers?: string | undefined;
}

/**
 * A client's TLS context for the hub, built at the first call from `settings()` and kept for every
 * connection after: the agent's (agent/hub-tls.ts) and the SDK's relay dials. Undefined when the
 * settings are Node's defaults, whose root store Node builds once and shares anyway. A context
 * built per connection instead, as a `ca` option makes Node do, cost 6-9 ms of CPU per connection
 * here with the system's roots in it (`node bench/tls-context.mjs`).
 */
export function lazyTlsContext(settings: () => ClientTlsSettings): () => SecureContext | undefined {
  let context: SecureContext | null | undefined; // null: decided, Node's defaults
  return () => {
    if (context === undefined) {
      const { ca, ciphers } = settings();
      context =
        ca !== undefined || ciphers
          ? createSecureContext({ minVersion: RELAY_MIN_TLS_VERSION, ...(ca !== undefined ? { ca } : {}), ...(ciphers ? { ciphers } : {}) })
          : null;
    }
    return context ?? undefined;
  };
}
