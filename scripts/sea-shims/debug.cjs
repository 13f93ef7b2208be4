'use strict';
// The `debug` package (mqtt.js, mqtt-packet and https-proxy-agent trace through it) for the single
// executable: always off, whatever DEBUG says. Two reasons:
// - secrets: mqtt-packet traces every string it writes, the CONNECT packet's password among them,
//   which is the agent's device token, or its key itself with `hub.auth: key`; `DEBUG=*` on a
//   device would print it to the journal;
// - memory: debug's colours load Node's tty module into every agent (docs/OPERATIONS.md "Agent
//   footprint").
// devstreams' own logs (log.level: debug) say what the agent does without secrets. The program run
// from a checkout (`node dist/devstreams.mjs`) keeps the real debug for developers.
function createDebug(namespace) {
  const debug = () => {};
  debug.namespace = namespace;
  debug.enabled = false;
  debug.log = () => {};
  debug.extend = (sub, delimiter = ':') => createDebug(`${namespace}${delimiter}${sub}`);
  debug.destroy = () => {};
  return debug;
}

createDebug.enable = () => {};
createDebug.disable = () => '';
createDebug.enabled = () => false;
createDebug.formatters = {};
createDebug.debug = createDebug;
createDebug.default = createDebug;
module.exports = createDebug;
