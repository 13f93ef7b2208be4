import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, DevstreamsError, isDeviceId, newSecret } from '../protocol/index.js';
import { agentConfigYaml, mqttUrlOf, parseAllowFlag, type AllowEntry } from './agent-config.js';
import { loadHubConfig, parseHostPort, publicUrlOf } from './config.js';
import { PUBLIC_MODE, SECRET_MODE, writeFileAtomic } from './files.js';
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

  if (!config.publicUrl && parseHostPort(config.listen)!.port === 0) {
    throw new ConfigError(opts.configFile, [
      'publicUrl: required when listen uses port 0 (the agent config needs the port devices dial)',
    ]);
  }
  const registry = readRegistryFile(config.registry);
  if (Object.hasOwn(registry.devices, deviceId)) {
    throw new DevstreamsError('BAD_REQUEST', `device "${deviceId}" is already registered in ${config.registry}`);
  }

  let ca: string | undefined;
  if (config.ca) {
    try {
      ca = readFileSync(config.ca, 'utf8');
    } catch (err) {
      throw new ConfigError(opts.configFile, [`ca: cannot read ${config.ca} (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
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
      mqttUrl: mqttUrlOf(publicUrlOf(config)),
      keyFile: `${deviceId}.key`,
      ...(caFile ? { caFile: 'ca.pem' } : {}),
      allow,
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
