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
export * from './ws-heartbeat.js';
export * from './tls-sessions.js';
export * from './bridge.js';
export * from './config-loader.js';
export * from './logger.js';
export * from './sd-notify.js';
