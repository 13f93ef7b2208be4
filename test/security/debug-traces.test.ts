import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { withoutSecretTraces } from '../../bin/debug-secrets.js';
import { Stack } from '../helpers/stack.js';

describe('DEBUG=* prints no secret in the program run from a checkout (bin/debug-secrets.ts)', () => {
  const stack = new Stack();
  afterAll(() => stack.stop());

  it('excludes the secret-printing namespaces from whatever DEBUG asks, and leaves an empty DEBUG alone', () => {
    expect(withoutSecretTraces('*')).toBe('*,-mqttjs*,-mqtt-packet*,-https-proxy-agent*');
    expect(withoutSecretTraces('mqttjs*,aedes')).toBe('mqttjs*,aedes,-mqttjs*,-mqtt-packet*,-https-proxy-agent*');
    expect(withoutSecretTraces(undefined)).toBeNull();
    expect(withoutSecretTraces(' ')).toBeNull();
  });

  it('an agent with hub.auth: key and DEBUG=* connects, says what it left out, and never prints its key', async () => {
    await stack.start([{ id: 'dbg-1', allow: ['echo'], start: false }]);
    const file = stack.agentConfig('dbg-1');
    const cfg = parse(readFileSync(file, 'utf8')) as { hub: Record<string, unknown> };
    cfg.hub.auth = 'key'; // the key itself is the MQTT password: mqtt.js' trace would print it
    writeFileSync(file, stringify(cfg), { mode: 0o600 });
    const key = readFileSync(file.replace(/\.yaml$/, '.key'), 'utf8').trim();
    const agent = await stack.startAgent('dbg-1', { DEBUG: '*' });
    await stack.waitForDevice('dbg-1', true);
    const out = agent.lines.join('\n');
    expect(key.length).toBeGreaterThan(20);
    expect(out).not.toContain(key);
    expect(out).not.toMatch(/ (mqttjs|mqtt-packet)[: ]/);
    expect(agent.lines[0]).toBe('devstreams: DEBUG: the traces of mqttjs*, mqtt-packet*, https-proxy-agent* are left out: they print passwords and stream tokens');
  });
});
