import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DevstreamsError, createLogger, type Logger } from '../protocol/index.js';
import { loadHubConfig, type HubConfig } from './config.js';
import { MosquittoDynsec } from './mosquitto-dynsec.js';
import { MqttControlBus } from './mqtt-control-bus.js';

/**
 * Keeps the external broker's device accounts in step with the registry, for the admin commands
 * (`hub add-device`, `rotate-key`, `revoke-key`, `disable-device`, `enable-device`,
 * `remove-device`), when the hub config says `mqtt.accounts: mosquitto-dynsec`. The registry is
 * written first (it is the source of truth); then one short broker connection applies the change.
 * With `accounts: none` (or no `mqtt`) nothing happens and null is returned.
 */

export type BrokerAccountChange =
  | { op: 'add' | 'password'; deviceId: string; keyFile: string; disabled?: boolean }
  | { op: 'enable' | 'disable' | 'remove'; deviceId: string };

/** What was done at the broker, for the command's output; null when the broker is not managed. */
export async function syncBrokerAccount(config: Readonly<HubConfig>, change: BrokerAccountChange, log?: Logger): Promise<string | null> {
  if (!config.mqtt || config.mqtt.accounts !== 'mosquitto-dynsec') return null;
  const quiet = log ?? createLogger({ name: 'devstreams-hub', level: 'warn' });
  const bus = new MqttControlBus({ config: config.mqtt, clientId: `devstreams-admin-${randomBytes(6).toString('hex')}`, log: quiet });
  const dynsec = new MosquittoDynsec({ bus });
  const id = change.deviceId;
  try {
    await bus.start();
    await dynsec.start();
    switch (change.op) {
      case 'add':
        await dynsec.upsertDevice(id, readKey(change.keyFile), change.disabled ?? false);
        return `broker account "${id}" created at ${config.mqtt.url}`;
      case 'password':
        // Creates the account if it is missing (the repair path after a failed add-device).
        await dynsec.upsertDevice(id, readKey(change.keyFile), change.disabled ?? false);
        // Mosquitto drops the device's connection without its last will: say it is offline, as
        // disable does, or the hub would show it online and answer its streams with a timeout.
        if (!change.disabled) await dynsec.markOffline(id);
        return (
          `broker account "${id}": its password is now the new key, and the previous key stops working at the broker now ` +
          `(a broker account holds one key, whatever the slot): the device is disconnected`
        );
      case 'enable':
      case 'disable':
        await dynsec.setEnabled(id, change.op === 'enable');
        return `broker account "${id}" ${change.op}d`;
      case 'remove':
        await dynsec.removeDevice(id);
        return `broker account "${id}" deleted`;
    }
  } finally {
    await dynsec.stop().catch(() => undefined);
    await bus.stop();
  }
}

function readKey(file: string): string {
  return readFileSync(file, 'utf8').trim();
}

/**
 * For the CLI: loads the config, applies the change, and returns the line to print (or null).
 * A failure becomes one clear error saying the registry changed and how to repair the broker.
 */
export async function syncBrokerAccountCli(configFile: string, change: BrokerAccountChange): Promise<string | null> {
  const { config } = loadHubConfig(configFile);
  try {
    return await syncBrokerAccount(config, change);
  } catch (err) {
    const repair =
      change.op === 'add' || change.op === 'password'
        ? `devstreams hub rotate-key ${change.deviceId} --slot primary --force (sets a fresh key at the broker)`
        : `the same command again`;
    throw new DevstreamsError(
      'INTERNAL',
      `the registry is updated, but the broker account of "${change.deviceId}" is not: ${(err as Error).message}; repair with ${repair}`,
    );
  }
}
