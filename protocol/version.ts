/** Wire protocol version. Bumped on any incompatible change to topics, payloads or stream framing. */
export const PROTOCOL_VERSION = 1 as const;

/** WebSocket subprotocol that carries the version (as chisel does); the relay refuses any other. */
export const WS_SUBPROTOCOL = `devstreams.v${PROTOCOL_VERSION}` as const;

/** HTTP header on every API response, so a client can tell which protocol the hub speaks. */
export const PROTOCOL_HEADER = 'x-devstreams-protocol' as const;

declare const __DEVSTREAMS_VERSION__: string | undefined;
/** The package version, stamped in by the build; '0.0.0-dev' when running from source. */
export const DEVSTREAMS_VERSION: string =
  typeof __DEVSTREAMS_VERSION__ === 'string' ? __DEVSTREAMS_VERSION__ : '0.0.0-dev';
