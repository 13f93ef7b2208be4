import type { DeviceInfo } from '../protocol/index.js';
import type { DevicePresence } from './device-presence.js';
import type { DeviceRegistry } from './registry.js';

/**
 * What the API answers about a registered device: its presence, and `disabled: true` when the
 * registry says so (`devstreams hub disable-device`), so a device that is offline because it was
 * disabled reads as disabled, not as a device that lost its network. Absent otherwise.
 */
export function deviceInfo(presence: DevicePresence, registry: DeviceRegistry, id: string, full = false): DeviceInfo {
  const info = presence.info(id, full);
  return registry.get(id)?.disabled ? { ...info, disabled: true } : info;
}
