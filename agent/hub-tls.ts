import type { SecureContext } from 'node:tls';
import { lazyTlsContext } from '../protocol/index.js';

/**
 * The agent's TLS context for its hub, built once, on first use, and shared by the control channel
 * (every reconnect) and the relay (every stream): Node's root store plus the configured CA (an
 * extra trust anchor, never a replacement; protocol/tls-context.ts `extraCa`) and the cipher order
 * (protocol/tls-ciphers.ts). With neither, undefined: Node's defaults.
 *
 * Built per connection instead, as a `ca` option makes Node do, a context with the 119 roots and a
 * CA costs 5-8 ms of CPU here (x86, Node 24) and several times that on a small board, and 1.6 MB
 * while its connection lives.
 */
export function hubTlsContext(opts: { ca?: string | undefined; ciphers?: string | undefined }): () => SecureContext | undefined {
  return lazyTlsContext(() => ({ extraCa: opts.ca, ciphers: opts.ciphers }));
}
