import { createSecureContext, type SecureContext } from 'node:tls';
import { RELAY_MIN_TLS_VERSION } from './ws-dial.js';

/** What a client's connections to the hub trust and ask for: the trust anchors, the cipher order. */
export interface ClientTlsSettings {
  ca?: string | Buffer | Array<string | Buffer> | undefined;
  /**
   * PEM certificates trusted besides Node's root store (the agent's `hub.ca`), where `ca` replaces
   * it. Added to this context's own copy of the store (below); not given together with `ca`.
   */
  extraCa?: string | undefined;
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
      const { ca, extraCa, ciphers } = settings();
      context =
        ca !== undefined || extraCa !== undefined || ciphers
          ? createSecureContext({ minVersion: RELAY_MIN_TLS_VERSION, ...(ca !== undefined ? { ca } : {}), ...(ciphers ? { ciphers } : {}) })
          : null;
      // Node's native context: addCACert on a context that uses Node's shared root store copies the
      // store, sharing its parsed certificates, and adds to the copy (Node's own
      // test-tls-addca.js checks that the shared store is left as it was). A `ca` option of the
      // roots' PEM text and the extra CA instead parsed all 120 certificates again: 1.0-1.3 MB more
      // for the life of the process (issue 6, twentieth round: the agent idle 59.9-60.1 -> 59.0-59.3
      // MB). On Node 24 the copy also keeps what the store holds besides the bundled roots
      // (NODE_EXTRA_CA_CERTS), as a context without hub.ca does (Node 20 copies the bundled roots).
      if (context && extraCa !== undefined) (context.context as { addCACert(pem: string): void }).addCACert(extraCa);
    }
    return context ?? undefined;
  };
}
