/**
 * A TLS peer whose certificate does not chain to a CA this side trusts: the hint our users need is
 * their own setting (`--ca` / `DEVSTREAMS_CA`, the agent's `hub.ca`), not Node's.
 */

/**
 * Node 24 ends the message of such an error with advice for its own command line, which a user of
 * the single executable cannot follow: "...; if the root CA is installed locally, try running
 * Node.js with --use-system-ca".
 */
const NODE_CA_ADVICE = /;\s*if the root CA is installed locally, try running Node\.js with\s+--use-system-ca\.?/;

/** True for an error that says the peer's certificate is not trusted (by its OpenSSL code). */
export function isTlsTrustError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code);
}

/** An error's message without Node's advice about its own flags. */
export function withoutNodeAdvice(message: string): string {
  return message.replace(NODE_CA_ADVICE, '');
}
