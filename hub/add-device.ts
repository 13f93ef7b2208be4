import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, DevstreamsError, isDeviceId, newSecret } from '../protocol/index.js';
import { agentConfigYaml, mqttUrlOf, parseAllowFlag, type AllowEntry } from './agent-config.js';
import { loadHubConfig, publicUrlOf } from './config.js';
import { PUBLIC_MODE, SECRET_MODE, writeFileAtomic } from './files.js';
import { publicUrlProblem } from './public-url.js';
import { newRegistryEntry, readRegistryFile, writeRegistryFile } from './registry.js';

/**
 * `devstreams hub add-device ID [--config DIR/hub.yaml] [--allow NAME=[HOST:]PORT]... [--allow echo]`:
 * registers a device (the signing key derived from its key in the registry's primary slot) and writes the three files to copy to it:
 * DIR/devices/ID.yaml (agent config), DIR/devices/ID.key and DIR/devices/ca.pem.
 */

export interface AddDeviceOptions {
  configFile: string;
  deviceId: string;
  allow?: string[];
}

export interface AddDeviceResult {
  deviceId: string;
  agentConfigFile: string;
  keyFile: string;
  caFile?: string;
}

export function addDevice(opts: AddDeviceOptions): AddDeviceResult {
  const { deviceId } = opts;
  if (!isDeviceId(deviceId)) {
    throw new DevstreamsError(
      'BAD_REQUEST',
      `invalid device id "${deviceId}": use 1-64 letters, digits, ".", "-" or "_", starting with a letter or digit`,
    );
  }
  const allow = parseAllowList(opts.allow ?? []);
  const { config, dir } = loadHubConfig(opts.configFile);

  // Before anything is written: without publicUrl a hub reached from other machines would hand its
  // devices wss://localhost (hub/public-url.ts).
  const publicUrlMissing = publicUrlProblem(config);
  if (publicUrlMissing) throw new ConfigError(opts.configFile, [publicUrlMissing]);
  const registry = readRegistryFile(config.registry);
  if (Object.hasOwn(registry.devices, deviceId)) {
    throw new DevstreamsError('BAD_REQUEST', `device "${deviceId}" is already registered in ${config.registry}`);
  }

  let ca: string | undefined;
  // With an external broker the agent trusts both the hub's CA and the broker's (one PEM bundle).
  for (const [field, file] of [['ca', config.ca], ['mqtt.ca', config.mqtt?.ca]] as const) {
    if (!file || file === config.ca && field === 'mqtt.ca') continue;
    try {
      const pem = readFileSync(file, 'utf8');
      ca = ca === undefined ? pem : `${ca.trimEnd()}\n${pem}`;
    } catch (err) {
      throw new ConfigError(opts.configFile, [`${field}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
    }
  }

  const key = newSecret();
  const devicesDir = join(dir, 'devices');
  const keyFile = join(devicesDir, `${deviceId}.key`);
  const caFile = ca !== undefined ? join(devicesDir, 'ca.pem') : undefined;
  const agentConfigFile = join(devicesDir, `${deviceId}.yaml`);

  writeFileAtomic(keyFile, key, SECRET_MODE);
  if (caFile) writeFileAtomic(caFile, ca!, PUBLIC_MODE);
  writeFileAtomic(
    agentConfigFile,
    agentConfigYaml({
      deviceId,
      mqttUrl: config.mqtt ? (config.mqtt.deviceUrl ?? config.mqtt.url) : mqttUrlOf(publicUrlOf(config)),
      keyFile: `${deviceId}.key`,
      ...(caFile ? { caFile: 'ca.pem' } : {}),
      allow,
      ...(config.mqtt ? { external: { relayHosts: config.mqtt.relayHosts ?? [publicUrlOf(config).hostname] } } : {}),
    }),
    SECRET_MODE,
  );

  // Last: the device exists for the hub only once its files are complete. Re-read just before the
  // write so a concurrent add-device of another id is not lost.
  const latest = readRegistryFile(config.registry);
  if (Object.hasOwn(latest.devices, deviceId)) {
    throw new DevstreamsError('BAD_REQUEST', `device "${deviceId}" is already registered in ${config.registry}`);
  }
  latest.devices[deviceId] = newRegistryEntry(key);
  writeRegistryFile(config.registry, latest);

  return { deviceId, agentConfigFile, keyFile, ...(caFile ? { caFile } : {}) };
}

function parseAllowList(flags: string[]): AllowEntry[] {
  const entries = flags.map(parseAllowFlag);
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.name)) throw new DevstreamsError('BAD_REQUEST', `--allow: service "${e.name}" is given twice`);
    seen.add(e.name);
  }
  return entries;
}
