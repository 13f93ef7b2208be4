/** The contract between agent, hub and service. It imports nothing of theirs. */
export * from './version.js';
export * from './limits.js';
export * from './errors.js';
export * from './ids.js';
export * from './topics.js';
export * from './messages.js';
export * from './api.js';
export * from './tokens.js';
export * from './device-token.js';
export * from './loopback.js';
export * from './ws-duplex.js';
export * from './message-socket.js';
export { receiveAsViews } from './ws-zero-copy.js';
export * from './headroom.js';
export * from './mux-frames.js';
export * from './mux-channel.js';
export * from './mux-connection.js';
export * from './mux-window.js';
export * from './ws-heartbeat.js';
export * from './tls-sessions.js';
export * from './abort.js';
export * from './ws-dial.js';
export * from './bridge.js';
export * from './write-coalescing.js';
export * from './tcp-read-buffer.js';
export * from './read-ahead.js';
export * from './config-error.js';
// config-loader.js (the YAML loader) is imported directly by the hub and the agent: through this
// index it would load the YAML parser into every service command's start-up.
export * from './logger.js';
export * from './sd-notify.js';
export * from './compiler-tiers.js';
export * from './gc-tuning.js';
export * from './idle-memory.js';
export * from './malloc-trim.js';
export * from './tls-ciphers.js';
export * from './tls-context.js';
export * from './tls-trust.js';
