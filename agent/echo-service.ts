import { PassThrough, type Duplex } from 'node:stream';

/**
 * The built-in echo service (allowlist entry `builtin: echo`), for `devstreams echo`: every byte the
 * service side sends comes back in order, and its EOF comes back after them. It stands where a TCP
 * target would, so the stream runs through the same bridge() as any other.
 */
export function createEchoTarget(): Duplex {
  return new PassThrough({ allowHalfOpen: true, highWaterMark: 64 * 1024 });
}

/** The builtins this agent has, by the name used in `builtin:`. */
export const BUILTIN_TARGETS: Readonly<Record<string, () => Duplex>> = Object.freeze({
  echo: createEchoTarget,
});
