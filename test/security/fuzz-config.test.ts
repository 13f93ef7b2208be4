import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../protocol/index.js';
import { loadHubConfig } from '../../hub/config.js';
import { loadAgentConfig } from '../../agent/config.js';

/**
 * Config files are input too: 10,000 generated files (5,000 hub.yaml, 5,000 agent configs), each loaded by
 * the real loader from a real file. Each either loads or throws a ConfigError naming the file and,
 * for every problem, where it is (a field path, a line, or the top level). Nothing else is thrown.
 */

/** Per config kind; the surface gets 2 x RUNS inputs. */
const RUNS = 5_000;
const dir = mkdtempSync(join(tmpdir(), 'devstreams-fuzz-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'device.key'), 'k'.repeat(43));
writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');

const junk = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom('', '0', '-1', '1e309', '127.0.0.1:8443', '[::1]:0', 'host:99999', 'https://x', 'wss://h/mqtt', '../../etc/passwd', '~', '*', 'yes'),
  fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
);
/** A value: mostly junk, sometimes an object of junk (nested once). */
const value = fc.oneof({ weight: 4, arbitrary: junk }, { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 12 }), junk, { maxKeys: 4 }) });

/** An object whose keys are mostly the schema's own, with generated values, plus stray keys. */
function objectOf(keys: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Record<string, unknown>> {
  const known = Object.fromEntries(Object.entries(keys).map(([k, a]) => [k, fc.oneof({ weight: 3, arbitrary: a }, { weight: 1, arbitrary: value })]));
  return fc
    .tuple(fc.record(known, { requiredKeys: [] }), fc.dictionary(fc.string({ maxLength: 12 }), value, { maxKeys: 2 }))
    .map(([a, b]) => ({ ...b, ...a }));
}

const hubConfig = objectOf({
  listen: fc.constantFrom('127.0.0.1:0', '0.0.0.0:443', 'localhost:8443', '[::1]:1', 'x:70000'),
  publicUrl: fc.constantFrom('https://hub.example.com', 'https://h:1/path', 'http://h', 'https://u:p@h'),
  tls: objectOf({ cert: fc.constantFrom('tls/hub.crt', ''), key: fc.constantFrom('tls/hub.key', '') }),
  serviceTokens: fc.array(objectOf({ name: fc.string({ maxLength: 70 }), sha256: fc.constantFrom('a'.repeat(64), 'A'.repeat(64), 'xyz') }), { maxLength: 3 }),
  tokens: fc.constantFrom('tokens.json', ''),
  registry: fc.constantFrom('registry.json', ''),
  handshake: objectOf({ defaultTimeoutMs: fc.integer({ min: -1, max: 700_000 }), maxTimeoutMs: fc.integer({ min: -1, max: 700_000 }) }),
  limits: objectOf({
    streamRequestsPerTokenPerSecond: fc.double({ min: -1, max: 2e6, noNaN: true }),
    streamRequestsPerDevicePerSecond: fc.double({ min: -1, max: 2e6, noNaN: true }),
    streamsPerDevice: fc.integer({ min: -1, max: 200_000 }),
    pendingHandshakes: fc.integer({ min: -1, max: 2_000_000 }),
    unauthenticatedPerAddress: fc.integer({ min: -1, max: 200_000 }),
    authTimeoutMs: fc.integer({ min: 0, max: 200_000 }),
    mqttMaxPacketBytes: fc.integer({ min: 0, max: 2 << 20 }),
  }),
  log: objectOf({ level: fc.constantFrom('info', 'debug', 'loud') }),
  mqtts: objectOf({ listen: fc.constantFrom('127.0.0.1:8883', 'nope') }),
});

const agentConfig = objectOf({
  hub: objectOf({
    url: fc.constantFrom('wss://hub.example.com/mqtt', 'mqtts://h:8883', 'ws://h/mqtt', 'wss://u:p@h/mqtt', 'https://h'),
    deviceId: fc.oneof(fc.constantFrom('pi-1', '..', '-x', 'a'.repeat(65)), fc.string({ maxLength: 70 })),
    keyFile: fc.constantFrom('device.key', 'missing.key', 'ca.pem', ''),
    key: fc.string({ maxLength: 60 }),
    ca: fc.constantFrom('ca.pem', 'device.key', 'missing.pem'),
  }),
  allow: fc.array(
    objectOf({
      name: fc.oneof(fc.constantFrom('ssh', 'echo', 'Bad Name'), fc.string({ maxLength: 40 })),
      port: fc.integer({ min: -1, max: 70_000 }),
      host: fc.constantFrom('127.0.0.1', '192.168.1.50', '::1', 'not a host', ''),
      builtin: fc.constantFrom('echo', 'shell'),
    }),
    { maxLength: 4 },
  ),
  limits: objectOf({ maxStreams: fc.integer({ min: -1, max: 2000 }), connectTimeoutMs: fc.integer({ min: -1, max: 200_000 }) }),
  log: objectOf({ level: fc.constantFrom('info', 'trace', 'loud') }),
  shutdown: objectOf({ graceMs: fc.integer({ min: -1, max: 700_000 }) }),
});

/** YAML text: a generated object serialised, raw generated text, or YAML with a syntax error spliced in. */
function yamlOf(obj: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: obj.map((o) => stringify(o)) },
    { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom(...'ab: -[]{}#&*!|>\'"%@`\n\t ,?1.'.split('')), maxLength: 120 }) },
    { weight: 1, arbitrary: fc.tuple(obj, fc.constantFrom('\n  bad: [', '\nkey: &a *b', '\n\t- x', '\nlisten: a\nlisten: b', '\n%YAML 9\n---\n')).map(([o, s]) => stringify(o) + s) },
    { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
  );
}

/** The property: loads, or throws a ConfigError naming `file` and where each problem is. */
function loadsOrNamesTheProblem(load: (file: string) => unknown, file: string, text: string): void {
  writeFileSync(file, text);
  try {
    load(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`threw ${(err as Error)?.name}: ${(err as Error)?.message} for:\n${text}`);
    expect(err.file === file || err.file === '--listen').toBe(true);
    expect(err.message.startsWith(`${err.file}: `)).toBe(true);
    expect(err.problems.length).toBeGreaterThan(0);
    for (const p of err.problems) expect(p).toMatch(/^(lines? \d+(-\d+)?|line \?|\(top level\)|[^\s:][^:]*): \S/);
  }
}

describe('config files (fast-check, 5,000 of each kind)', { timeout: 120_000 }, () => {
  it('hub.yaml: loads or throws a ConfigError naming file and field', () => {
    const file = join(dir, 'hub.yaml');
    fc.assert(fc.property(yamlOf(hubConfig), (text) => loadsOrNamesTheProblem((f) => loadHubConfig(f), file, text)), { numRuns: RUNS });
  });

  it('agent config: loads or throws a ConfigError naming file and field', () => {
    const file = join(dir, 'agent.yaml');
    fc.assert(fc.property(yamlOf(agentConfig), (text) => loadsOrNamesTheProblem((f) => loadAgentConfig(f), file, text)), { numRuns: RUNS });
  });
});
