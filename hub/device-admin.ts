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
 * slot's previous key is disconnected. Replacing a device's only key (the other slot empty) cuts
 * the device off until it has the new key: refused unless `force`.
 */
export function rotateKey(opts: { configFile: string; deviceId: string; slot: KeySlot; force?: boolean }): DeviceAdminResult & { otherSlotHasKey: boolean } {
  const { registryFile, dir, entry } = target(opts.configFile, opts.deviceId);
  const other = opts.slot === 'primary' ? 'secondary' : 'primary';
  const onlyKey = (e: RegistryEntry): boolean => e.keys[opts.slot] !== undefined && e.keys[other] === undefined;
  const refuse = (): DevstreamsError =>
    new DevstreamsError(
      'BAD_REQUEST',
      `the ${opts.slot} key is the only key of device "${opts.deviceId}": replacing it cuts the device off until it has the new key. ` +
        `Rotate into the empty slot instead (devstreams hub rotate-key ${opts.deviceId} --slot ${other}), or add --force to replace it anyway`,
    );
  if (onlyKey(entry) && !opts.force) throw refuse();
  const key = newSecret();
  const keyFile = join(dir, 'devices', `${opts.deviceId}.key`);
  // The key file first, so the registry never holds a key that no file has.
  writeFileAtomic(keyFile, key, SECRET_MODE);
  let otherSlotHasKey = false;
  update(registryFile, opts.deviceId, (e) => {
    // Again on the registry as written: a concurrent revoke-key may have emptied the other slot.
    if (onlyKey(e) && !opts.force) throw refuse();
    otherSlotHasKey = e.keys[other] !== undefined;
    return { ...e, keys: { ...e.keys, [opts.slot]: keySlotRecord(key) } };
  });
  return { deviceId: opts.deviceId, registryFile, keyFile, slot: opts.slot, disabled: entry.disabled, otherSlotHasKey };
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

/**
 * Disables (or enables) a device: a disabled device is disconnected at once and refused from then
 * on. `changed` is false when it already was in that state (the registry is then left alone).
 */
export function setDeviceDisabled(opts: { configFile: string; deviceId: string; disabled: boolean }): DeviceAdminResult & { changed: boolean } {
  const { registryFile, entry } = target(opts.configFile, opts.deviceId);
  if (entry.disabled === opts.disabled) return { deviceId: opts.deviceId, registryFile, changed: false };
  update(registryFile, opts.deviceId, (e) => ({ ...e, disabled: opts.disabled }));
  return { deviceId: opts.deviceId, registryFile, changed: true };
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
