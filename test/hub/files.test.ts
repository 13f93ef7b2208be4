import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, DevstreamsError, deviceSigningKey, secretMatches } from '../../protocol/index.js';
import { parseConfigText } from '../../protocol/config-loader.js';
import { AgentConfigSchema } from '../../agent/config.js';
import { addDevice } from '../../hub/add-device.js';
import { parseAllowFlag } from '../../hub/agent-config.js';
import { loadHubConfig } from '../../hub/config.js';
import { createDevCa } from '../../hub/dev-ca.js';
import { initHub } from '../../hub/init.js';
import { DeviceRegistry, readRegistryFile } from '../../hub/registry.js';
import { readTokensFile } from '../../hub/service-tokens.js';
import { captureLogger, tempDir } from './helpers.js';

const mode = (f: string): number => statSync(f).mode & 0o777;
const dirs: string[] = [];
const newDir = (): string => {
  const d = tempDir();
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function expectConfigError(fn: () => unknown, ...parts: string[]): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).not.toContain('\n');
    for (const p of parts) expect(msg).toContain(p);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('hub config', () => {
  const base = `tls: {cert: tls/hub.crt, key: tls/hub.key}\nserviceTokens: [{name: a, sha256: ${'a'.repeat(64)}}]\n`;

  it('applies defaults and resolves paths against the config folder', () => {
    const dir = newDir();
    const file = join(dir, 'hub.yaml');
    writeFileSync(file, base);
    const { config } = loadHubConfig(file);
    expect(config.listen).toBe('127.0.0.1:8443');
    expect(config.tls.cert).toBe(join(dir, 'tls/hub.crt'));
    expect(config.registry).toBe(join(dir, 'registry.json'));
    expect(config.handshake).toEqual({ defaultTimeoutMs: 60000, maxTimeoutMs: 300000, joinTimeoutMs: 15000 });
    expect(config.log.level).toBe('info');
    expect(Object.isFrozen(config.tls)).toBe(true);
    expect(loadHubConfig(file, { listen: '127.0.0.1:0' }).config.listen).toBe('127.0.0.1:0');
  });

  it('names the file and the field of every problem, on one line', () => {
    const dir = newDir();
    const file = join(dir, 'hub.yaml');
    writeFileSync(file, `${base}lisen: 1.2.3.4:5\n`);
    expectConfigError(() => loadHubConfig(file), file, 'lisen');
    writeFileSync(file, `${base}listen: localhost:99999\n`);
    expectConfigError(() => loadHubConfig(file), file, 'listen', 'HOST:PORT');
    writeFileSync(file, `${base}publicUrl: http://x.example\n`);
    expectConfigError(() => loadHubConfig(file), file, 'publicUrl', 'https');
    writeFileSync(file, `${base}deviceAuth: {maxTokenTtlSeconds: 5}\n`);
    expectConfigError(() => loadHubConfig(file), file, 'deviceAuth.maxTokenTtlSeconds');
    writeFileSync(file, `${base}handshake: {defaultTimeoutMs: 9000, maxTimeoutMs: 5000}\n`);
    expectConfigError(() => loadHubConfig(file), file, 'handshake.defaultTimeoutMs');
    writeFileSync(file, `${base}tls: {cert: a, key: b}\n`);
    expectConfigError(() => loadHubConfig(file), file, 'line');
    expectConfigError(() => loadHubConfig(join(dir, 'missing.yaml')), 'missing.yaml', 'ENOENT');
    writeFileSync(file, base);
    expectConfigError(() => loadHubConfig(file, { listen: 'nope' }), '--listen', 'nope');
  });
});

describe('dev CA', () => {
  it('makes a P-256 CA and a server certificate for localhost and 127.0.0.1 signed by it', () => {
    const { ca, server } = createDevCa();
    const caCert = new X509Certificate(ca.cert);
    const cert = new X509Certificate(server.cert);
    expect(caCert.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(caCert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.checkPrivateKey(createPrivateKey(server.key))).toBe(true);
    expect(new Date(caCert.validTo).getTime()).toBeGreaterThan(Date.now() + 9 * 365 * 86400_000);
  });

  it('names host names, IPv4 and IPv6 addresses in the server certificate', () => {
    const { ca, server } = createDevCa(['hub.example.com', 'localhost', '127.0.0.1', '2001:db8::1', '::ffff:192.0.2.7']);
    const cert = new X509Certificate(server.cert);
    expect(cert.verify(new X509Certificate(ca.cert).publicKey)).toBe(true);
    expect(cert.checkHost('hub.example.com')).toBe('hub.example.com');
    expect(cert.checkHost('other.example.com')).toBeUndefined();
    expect(cert.checkIP('2001:db8::1')).toBe('2001:db8::1');
    expect(cert.checkIP('::ffff:192.0.2.7')).toBe('::ffff:192.0.2.7');
    expect(cert.checkIP('2001:db8::2')).toBeUndefined();
  });
});

describe('hub init', () => {
  it('writes config, certificates, token and registry with the right modes', () => {
    const dir = join(newDir(), 'hubdir');
    const r = initHub({ dir, listen: '127.0.0.1:9555' });
    const f = (p: string): string => join(dir, p);
    expect(mode(f('hub.yaml'))).toBe(0o600);
    expect(mode(f('tls/ca.key'))).toBe(0o600);
    expect(mode(f('tls/hub.key'))).toBe(0o600);
    expect(mode(f('tls/ca.crt'))).toBe(0o644);
    expect(mode(f('tls/hub.crt'))).toBe(0o644);
    expect(mode(f('service.token'))).toBe(0o600);
    expect(mode(f('registry.json'))).toBe(0o600);
    const token = readFileSync(f('service.token'), 'utf8');
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // The config holds only the token's digest, and loads cleanly.
    expect(readFileSync(f('hub.yaml'), 'utf8')).not.toContain(token);
    const { config } = loadHubConfig(f('hub.yaml'));
    expect(config.listen).toBe('127.0.0.1:9555');
    expect(mode(f('tokens.json'))).toBe(0o600);
    expect(readFileSync(f('tokens.json'), 'utf8')).not.toContain(token);
    expect(secretMatches(token, readTokensFile(config.tokens).tokens.default!.sha256)).toBe(true);
    expect(config.ca).toBe(f('tls/ca.crt'));
    expect(readRegistryFile(config.registry)).toEqual({ devices: {} });
    // The export lines a service shell needs, without the token itself.
    expect(r.exportLines).toEqual([
      'export DEVSTREAMS_HUB=https://localhost:9555',
      `export DEVSTREAMS_TOKEN="$(cat ${f('service.token')})"`,
      `export DEVSTREAMS_CA=${f('tls/ca.crt')}`,
    ]);
    expect(r.exportLines.join('\n')).not.toContain(token);
  });

  it('--public-url goes into hub.yaml, the export line and the certificate the devices verify', () => {
    const dir = newDir();
    const r = initHub({ dir, listen: '0.0.0.0:9557', publicUrl: 'https://Hub.Example.com:9557/' });
    const { config } = loadHubConfig(join(dir, 'hub.yaml'));
    expect(config.publicUrl).toBe('https://hub.example.com:9557');
    expect(r.exportLines[0]).toBe('export DEVSTREAMS_HUB=https://hub.example.com:9557');
    expect(r.warnings).toEqual([]);
    const cert = new X509Certificate(readFileSync(join(dir, 'tls/hub.crt')));
    expect(cert.checkIssued(new X509Certificate(readFileSync(join(dir, 'tls/ca.crt'))))).toBe(true);
    expect(cert.checkHost('hub.example.com')).toBe('hub.example.com');
    expect(cert.checkHost('localhost')).toBe('localhost'); // the hub's own shell keeps working
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    // An address as the public host: an IP entry, IPv6 included.
    const v6 = newDir();
    initHub({ dir: v6, listen: '[::]:9558', publicUrl: 'https://[2001:db8::5]:9558' });
    expect(new X509Certificate(readFileSync(join(v6, 'tls/hub.crt'))).checkIP('2001:db8::5')).toBe('2001:db8::5');
    expect(loadHubConfig(join(v6, 'hub.yaml')).config.publicUrl).toBe('https://[2001:db8::5]:9558');
  });

  it('refuses a bad --public-url, naming it and the problem, and writes nothing', () => {
    const base = newDir();
    const cases: [string, string][] = [
      ['hub.example.com', 'must be a URL'],
      ['http://hub.example.com', 'https://'],
      ['https://hub.example.com/devstreams', 'no path'],
      ['https://u:p@hub.example.com', 'credentials'],
      ['https://hub.example.com/?a=1', 'query'],
      ['https://0.0.0.0:8443', 'wildcard'],
      ['https://[::]:8443', 'wildcard'],
    ];
    for (const [i, [url, problem]] of cases.entries()) {
      const dir = join(base, String(i));
      expectConfigError(() => initHub({ dir, listen: '0.0.0.0:8443', publicUrl: url }), '--public-url', `"${url}"`, problem);
      expect(existsSync(dir), url).toBe(false);
    }
  });

  it('warns when it listens where other machines reach it without --public-url, and not on loopback', () => {
    for (const listen of ['0.0.0.0:9559', '[::]:9559', '192.0.2.10:9559', 'hub.lan:9559']) {
      const r = initHub({ dir: newDir(), listen });
      expect(r.warnings, listen).toHaveLength(1);
      expect(r.warnings[0]).toContain(`--listen ${listen}`);
      expect(r.warnings[0]).toContain('publicUrl');
      expect(r.warnings[0]).toContain(r.configFile);
    }
    for (const listen of ['127.0.0.1:9559', 'localhost:9559', '[::1]:9559', '127.0.0.1:0']) {
      expect(initHub({ dir: newDir(), listen }).warnings, listen).toEqual([]);
    }
  });

  it('writes an IPv6 listen address so that hub.yaml loads', () => {
    const dir = newDir();
    initHub({ dir, listen: '[::1]:9555' });
    expect(loadHubConfig(join(dir, 'hub.yaml')).config.listen).toBe('[::1]:9555');
  });

  it('refuses to overwrite an existing hub.yaml', () => {
    const dir = newDir();
    initHub({ dir });
    const before = readFileSync(join(dir, 'hub.yaml'), 'utf8');
    const tokenBefore = readFileSync(join(dir, 'service.token'), 'utf8');
    expectConfigError(() => initHub({ dir }), join(dir, 'hub.yaml'), 'already exists');
    expect(readFileSync(join(dir, 'hub.yaml'), 'utf8')).toBe(before);
    expect(readFileSync(join(dir, 'service.token'), 'utf8')).toBe(tokenBefore);
  });
});

describe('hub add-device', () => {
  function setup(): { dir: string; configFile: string } {
    const dir = newDir();
    initHub({ dir, listen: '127.0.0.1:9556' });
    return { dir, configFile: join(dir, 'hub.yaml') };
  }

  it('registers the device and writes an agent config, key and CA the agent accepts', () => {
    const { dir, configFile } = setup();
    const r = addDevice({ configFile, deviceId: 'pi-kitchen' });
    const key = readFileSync(join(dir, 'devices/pi-kitchen.key'), 'utf8');
    expect(mode(join(dir, 'devices/pi-kitchen.key'))).toBe(0o600);
    expect(mode(join(dir, 'devices/pi-kitchen.yaml'))).toBe(0o600);
    expect(readFileSync(join(dir, 'devices/ca.pem'), 'utf8')).toBe(readFileSync(join(dir, 'tls/ca.crt'), 'utf8'));
    const entry = readRegistryFile(join(dir, 'registry.json')).devices['pi-kitchen']!;
    expect(entry.keys.primary!.sasKey).toBe(deviceSigningKey(key));
    expect(JSON.stringify(entry)).not.toContain(key);
    expect(mode(join(dir, 'registry.json'))).toBe(0o600);

    const yaml = readFileSync(r.agentConfigFile, 'utf8');
    expect(yaml).not.toContain(key);
    expect(yaml).toMatch(/# - \{ name: ssh, port: 22 \}/);
    const agentConfig = parseConfigText(r.agentConfigFile, yaml, AgentConfigSchema);
    expect(agentConfig.hub).toMatchObject({ url: 'wss://localhost:9556/mqtt', deviceId: 'pi-kitchen', keyFile: 'pi-kitchen.key', ca: 'ca.pem', auth: 'token' });
    expect(agentConfig.allow).toEqual([{ kind: 'builtin', name: 'echo', builtin: 'echo' }]);
    expect(agentConfig.limits.maxStreams).toBe(16);
  });

  it('fills the allowlist from --allow flags', () => {
    const { configFile } = setup();
    const r = addDevice({ configFile, deviceId: 'gw1', allow: ['ssh=22', 'plc=192.168.1.50:502', 'echo', 'web=Host.lan:8080'] });
    const agentConfig = parseConfigText(r.agentConfigFile, readFileSync(r.agentConfigFile, 'utf8'), AgentConfigSchema);
    expect(agentConfig.allow).toEqual([
      { kind: 'tcp', name: 'ssh', host: '127.0.0.1', port: 22 },
      { kind: 'tcp', name: 'plc', host: '192.168.1.50', port: 502 },
      { kind: 'builtin', name: 'echo', builtin: 'echo' },
      { kind: 'tcp', name: 'web', host: 'host.lan', port: 8080 },
    ]);
  });

  it('refuses a hub other machines reach that has no publicUrl, and leaves nothing behind', () => {
    for (const listen of ['0.0.0.0:9560', '[::]:9560', '192.0.2.10:9560', 'hub.lan:9560']) {
      const dir = newDir();
      initHub({ dir, listen });
      const configFile = join(dir, 'hub.yaml');
      const registryBefore = readFileSync(join(dir, 'registry.json'), 'utf8');
      expectConfigError(() => addDevice({ configFile, deviceId: 'pi' }), configFile, `publicUrl: required when listen (${listen})`, 'hub init --public-url');
      expect(existsSync(join(dir, 'devices')), listen).toBe(false);
      expect(readFileSync(join(dir, 'registry.json'), 'utf8')).toBe(registryBefore);
      // publicUrl set by hand is what it asks for, localhost included (devices on this machine).
      writeFileSync(configFile, readFileSync(configFile, 'utf8').replace('# publicUrl: https://hub.example.com:8443', 'publicUrl: https://localhost:9560'));
      const r = addDevice({ configFile, deviceId: 'pi' });
      expect(parseConfigText(r.agentConfigFile, readFileSync(r.agentConfigFile, 'utf8'), AgentConfigSchema).hub.url).toBe('wss://localhost:9560/mqtt');
    }
  });

  it('needs no publicUrl for a hub on loopback: the agent config names localhost', () => {
    for (const listen of ['127.0.0.1:9561', 'localhost:9561', '127.0.1.1:9561', '[::1]:9561']) {
      const dir = newDir();
      initHub({ dir, listen });
      const r = addDevice({ configFile: join(dir, 'hub.yaml'), deviceId: 'pi' });
      expect(parseConfigText(r.agentConfigFile, readFileSync(r.agentConfigFile, 'utf8'), AgentConfigSchema).hub.url, listen).toBe('wss://localhost:9561/mqtt');
    }
  });

  it('writes the publicUrl of hub init --public-url into the agent config', () => {
    const dir = newDir();
    initHub({ dir, listen: '0.0.0.0:9562', publicUrl: 'https://hub.example.com' });
    const r = addDevice({ configFile: join(dir, 'hub.yaml'), deviceId: 'pi' });
    expect(parseConfigText(r.agentConfigFile, readFileSync(r.agentConfigFile, 'utf8'), AgentConfigSchema).hub.url).toBe('wss://hub.example.com/mqtt');
  });

  it('refuses a bad id, an existing id and bad --allow flags, changing nothing', () => {
    const { dir, configFile } = setup();
    addDevice({ configFile, deviceId: 'd1' });
    const registryBefore = readFileSync(join(dir, 'registry.json'), 'utf8');
    const keyBefore = readFileSync(join(dir, 'devices/d1.key'), 'utf8');
    expect(() => addDevice({ configFile, deviceId: '../x' })).toThrow(DevstreamsError);
    expect(() => addDevice({ configFile, deviceId: 'd1' })).toThrow(/already registered/);
    for (const bad of ['ssh', 'ssh=0', 'ssh=70000', 'SSH=22', '22=22', 'x=bad host:1']) {
      expect(() => parseAllowFlag(bad), bad).toThrow(/--allow/);
    }
    expect(() => addDevice({ configFile, deviceId: 'd2', allow: ['a=1', 'a=2'] })).toThrow(/twice/);
    expect(readFileSync(join(dir, 'registry.json'), 'utf8')).toBe(registryBefore);
    expect(readFileSync(join(dir, 'devices/d1.key'), 'utf8')).toBe(keyBefore);
    expect(existsSync(join(dir, 'devices/d2.yaml'))).toBe(false);
  });
});

describe('device registry', () => {
  it('re-reads the file when it changes and names the file when it is corrupt', async () => {
    const dir = newDir();
    initHub({ dir });
    const file = join(dir, 'registry.json');
    const logs = captureLogger();
    const registry = new DeviceRegistry({ file, log: logs.log });
    await registry.start();
    expect(registry.has('late')).toBe(false);
    addDevice({ configFile: join(dir, 'hub.yaml'), deviceId: 'late' });
    expect(registry.has('late')).toBe(true);
    writeFileSync(file, '{"devices": {"x": {"keys": {"primary": {"sasKey": "nope", "createdAt": "2024-01-01T00:00:00Z"}}, "createdAt": "2024-01-01T00:00:00Z"}}}');
    expect(registry.has('late')).toBe(true); // last good content kept
    expect(logs.text()).toContain('cannot be used');
    expect(() => readRegistryFile(file)).toThrow(ConfigError);
    expectConfigError(() => readRegistryFile(file), file, 'devices.x.keys.primary.sasKey');
    writeFileSync(file, 'not json');
    await expect(new DeviceRegistry({ file, log: logs.log }).start()).rejects.toThrow(`${file}: the device registry is not valid JSON`);
  });
});
