'use strict';
// The `debug` package (mqtt.js, mqtt-packet and https-proxy-agent log through it) for the single
// executable: the same DEBUG variable and namespace patterns (`DEBUG=mqttjs*,-mqttjs:ws`), lines
// written to stderr, without debug's colours, which load Node's tty module into every agent
// (scripts/build-binary.mjs REPLACED; docs/OPERATIONS.md "Agent footprint").
const { format } = require('node:util');

function patterns(spec) {
  const on = [];
  const off = [];
  for (const p of String(spec ?? '').split(/[\s,]+/)) {
    if (!p) continue;
    const neg = p.startsWith('-');
    const body = (neg ? p.slice(1) : p).replace(/[|\\{}()[\]^$+?.]/g, '\\$&').replace(/\*/g, '.*?');
    (neg ? off : on).push(new RegExp(`^${body}$`));
  }
  return { on, off };
}

let wanted = patterns(process.env.DEBUG);

function enabled(namespace) {
  if (wanted.off.some((re) => re.test(namespace))) return false;
  return wanted.on.some((re) => re.test(namespace));
}

function createDebug(namespace) {
  const debug = (...args) => {
    if (!debug.enabled) return;
    const first = typeof args[0] === 'string' ? args.shift() : args.length ? '%O' : '';
    debug.log(`${new Date().toISOString()} ${namespace} ${format(first, ...args)}`);
  };
  debug.namespace = namespace;
  debug.enabled = enabled(namespace);
  debug.log = (line) => process.stderr.write(`${line}\n`);
  debug.extend = (sub, delimiter = ':') => createDebug(`${namespace}${delimiter}${sub}`);
  debug.destroy = () => {};
  return debug;
}

createDebug.enable = (spec) => {
  wanted = patterns(spec);
};
createDebug.disable = () => {
  const was = process.env.DEBUG ?? '';
  wanted = patterns('');
  return was;
};
createDebug.enabled = enabled;
createDebug.formatters = {};
createDebug.debug = createDebug;
createDebug.default = createDebug;
module.exports = createDebug;
