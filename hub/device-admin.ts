import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DevstreamsError, isDeviceId, newSecret } from '../protocol/index.js';
import { loadHubConfig } from './config.js';
import { SECRET_MODE, writeFileAtomic } from './files.js';
import { KEY_SLOTS, keySlotRecord, readRegistryFile, writeRegistryFile, type KeySlot, type RegistryEntry } from './registry.js';

/**
 * The device administration commands (`devstreams hub rotate-key | revoke-key | disable-device |
 * enable-device | remove-device`). Each reads the registry, changes one device, and writes it back
 * atomically (0600); a running hub sees the change at once (hub/watched-file.ts) and disconnects
 * the device when it lost the right to be connected.
 */

export interface DeviceAdminResult {
  deviceId: string;
  registryFile: string;
  /** rotate-key: where the new key was written (the file to copy to the device). */
  keyFile?: string;
  slot?: KeySlot;
  /** remove-device: the files deleted from DIR/devices. */
  removedFiles?: string[];
  /** rotate-key: whether the device is disabled (the broker account stays so; hub/mosquitto-sync.ts). */
  disabled?: boolean;
}

function target(configFile: string, deviceId: string): { registryFile: string; dir: string; entry: RegistryEntry } {
  if (!isDeviceId(deviceId)) throw new DevstreamsError('BAD_REQUEST', `invalid device id "${deviceId.slice(0, 80)}"`);
  const { config, dir } = loadHubConfig(configFile);
  const entry = readRegistryFile(config.registry).devices[deviceId];
  if (!entry) throw new DevstreamsError('DEVICE_UNKNOWN', `no device "${deviceId}" is registered in ${config.registry}`);
  return { registryFile: config.registry, dir, entry };
}

/** Re-reads the registry just before writing, so a concurrent change to another device is not lost. */
function update(registryFile: string, deviceId: string, change: (e: RegistryEntry) => RegistryEntry | null): void {
  const latest = readRegistryFile(registryFile);
  const entry = latest.devices[deviceId];
  if (!entry) throw new DevstreamsError('DEVICE_UNKNOWN', `no device "${deviceId}" is registered in ${registryFile}`);
  const next = change(structuredClone(entry));
  if (next === null) delete latest.devices[deviceId];
  else latest.devices[deviceId] = next;
  writeRegistryFile(registryFile, latest);
}

export function parseSlot(value: string | undefined, fallback: KeySlot): KeySlot {
  if (value === undefined) return fallback;
  if ((KEY_SLOTS as readonly string[]).includes(value)) return value as KeySlot;
  throw new DevstreamsError('BAD_REQUEST', `--slot must be primary or secondary (got "${value.slice(0, 40)}")`);
}

/**
 * Puts a fresh key into `slot` (the other slot's key stays valid) and writes it to
 * DIR/devices/ID.key (0600), the file the agent config there names. A device connected with the
 * slot's previous key is disconnected.
 */
export function rotateKey(opts: { configFile: string; deviceId: string; slot: KeySlot }): DeviceAdminResult {
  const { registryFile, dir, entry } = target(opts.configFile, opts.deviceId);
  const key = newSecret();
  const keyFile = join(dir, 'devices', `${opts.deviceId}.key`);
  writeFileAtomic(keyFile, key, SECRET_MODE);
  update(registryFile, opts.deviceId, (e) => ({ ...e, keys: { ...e.keys, [opts.slot]: keySlotRecord(key) } }));
  return { deviceId: opts.deviceId, registryFile, keyFile, slot: opts.slot, disabled: entry.disabled };
}

/** Empties a key slot: that key stops working at once. The last key cannot be revoked (disable the device instead). */
export function revokeKey(opts: { configFile: string; deviceId: string; slot: KeySlot }): DeviceAdminResult {
  const { registryFile } = target(opts.configFile, opts.deviceId);
  update(registryFile, opts.deviceId, (e) => {
    if (!e.keys[opts.slot]) throw new DevstreamsError('BAD_REQUEST', `device "${opts.deviceId}" has no ${opts.slot} key`);
    const other = opts.slot === 'primary' ? 'secondary' : 'primary';
    if (!e.keys[other]) {
      throw new DevstreamsError(
        'BAD_REQUEST',
        `the ${opts.slot} key is the device's only key; rotate a new key into the ${other} slot first, or use disable-device`,
      );
    }
    const keys = { ...e.keys };
    delete keys[opts.slot];
    return { ...e, keys };
  });
  return { deviceId: opts.deviceId, registryFile, slot: opts.slot };
}

/** Disables (or enables) a device: a disabled device is disconnected at once and refused from then on. */
export function setDeviceDisabled(opts: { configFile: string; deviceId: string; disabled: boolean }): DeviceAdminResult {
  const { registryFile } = target(opts.configFile, opts.deviceId);
  update(registryFile, opts.deviceId, (e) => ({ ...e, disabled: opts.disabled }));
  return { deviceId: opts.deviceId, registryFile };
}

/** Forgets a device: its registry entry, and its agent config and key in DIR/devices. */
export function removeDevice(opts: { configFile: string; deviceId: string }): DeviceAdminResult {
  const { registryFile, dir } = target(opts.configFile, opts.deviceId);
  update(registryFile, opts.deviceId, () => null);
  const removedFiles: string[] = [];
  for (const ext of ['key', 'yaml']) {
    const f = join(dir, 'devices', `${opts.deviceId}.${ext}`);
    if (existsSync(f)) {
      rmSync(f, { force: true });
      removedFiles.push(f);
    }
  }
  return { deviceId: opts.deviceId, registryFile, removedFiles };
}
