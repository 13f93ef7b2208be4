import { createRequire } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ROOT } from '../helpers/proc.js';

// scripts/sea-shims/debug.cjs: the `debug` package as the single executable carries it. Off
// whatever DEBUG says (mqtt-packet's trace would print the MQTT password: the device token or key),
// and in the shape mqtt.js, mqtt-packet and https-proxy-agent call.
interface Debugger {
  (...args: unknown[]): void;
  enabled: boolean;
  namespace: string;
  extend(sub: string, delimiter?: string): Debugger;
}
interface CreateDebug {
  (namespace: string): Debugger;
  enable(spec: string): void;
  enabled(namespace: string): boolean;
  default: CreateDebug;
}

const load = (): CreateDebug => {
  const require = createRequire(`${ROOT}/`);
  const path = require.resolve('./scripts/sea-shims/debug.cjs');
  delete require.cache[path];
  return require(path) as CreateDebug;
};

describe('the executable\'s debug shim', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it('writes nothing, even with DEBUG=* or enable(), so that no trace carries the MQTT password', () => {
    vi.stubEnv('DEBUG', '*');
    const writes = [vi.spyOn(process.stderr, 'write'), vi.spyOn(process.stdout, 'write'), vi.spyOn(console, 'log'), vi.spyOn(console, 'error')];
    const createDebug = load();
    createDebug.enable('*');
    const debug = createDebug('mqtt-packet:writeToStream');
    debug('writeString: %s', 'the-device-token');
    debug.extend('connect')('password %s', 'the-device-key');
    expect([debug.enabled, createDebug.enabled('mqttjs:client')]).toEqual([false, false]);
    for (const w of writes) expect(w).not.toHaveBeenCalled();
  });

  it('takes the calls its importers make: default import, extend, namespace', () => {
    const createDebug = load();
    expect(createDebug.default).toBe(createDebug);
    expect(createDebug('mqttjs').extend('tls').namespace).toBe('mqttjs:tls');
    expect(createDebug('agent-base').extend('proxy', '/').namespace).toBe('agent-base/proxy');
  });
});
