import { parseArgs } from 'node:util';
import { argsProblem } from '../protocol/index.js';
import { hubConfigPath } from './config-path.js';
import { syncBrokerAccountCli } from './mosquitto-sync.js';
import { parseSlot, removeDevice, revokeKey, rotateKey, setDeviceDisabled } from './device-admin.js';
import { createToken, listTokens, revokeToken } from './token-admin.js';

/**
 * The hub's administration subcommands: device keys and state, and service tokens. Each acts on the
 * files of a hub folder (registry.json, tokens.json); a running hub picks the change up at once.
 * The only secret ever printed is a new service token, by `token create`, once, on stdout.
 */

export const ADMIN_USAGE = `       devstreams hub rotate-key ID [--slot primary|secondary] [--force] [--config DIR/hub.yaml]
       devstreams hub revoke-key ID --slot primary|secondary [--config DIR/hub.yaml]
       devstreams hub disable-device ID | enable-device ID | remove-device ID [--config DIR/hub.yaml]
       devstreams hub token create NAME [--devices ID|GLOB,...] [--services NAME,...] [--config DIR/hub.yaml]
       devstreams hub token list [--json] [--config DIR/hub.yaml]
       devstreams hub token revoke NAME [--config DIR/hub.yaml]`;

/** The admin subcommands, as `devstreams hub` dispatches them (hub/cli.ts). */
export const ADMIN_COMMANDS = ['rotate-key', 'revoke-key', 'disable-device', 'enable-device', 'remove-device', 'token'] as const;
/** What `devstreams hub token` does. */
export const TOKEN_ACTIONS = ['create', 'list', 'revoke'] as const;

type Print = (text: string) => void;

/**
 * Runs one admin subcommand; resolves to the exit code. A usage problem prints one line on stderr
 * and returns 2; a refused change throws its DevstreamsError/ConfigError (one line, non-zero).
 */
export async function runAdminCommand(sub: (typeof ADMIN_COMMANDS)[number], args: string[], opts: { out: Print; err?: Print }): Promise<number> {
  const err = opts.err ?? ((t: string) => void process.stderr.write(t));
  const usage = (problem: string): number => {
    err(`devstreams: hub: ${problem} (see devstreams hub --help)\n`);
    return 2;
  };
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        config: { type: 'string', short: 'c' },
        slot: { type: 'string' },
        devices: { type: 'string' },
        services: { type: 'string' },
        json: { type: 'boolean' },
        force: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    return usage(argsProblem(e));
  }
  const { values, positionals } = parsed;
  // Looked up once the command line is known to be right: a usage error is reported first.
  const hubConfig = (): string => hubConfigPath(values.config);

  if (sub === 'token') {
    const [action, ...names] = positionals;
    if (!(TOKEN_ACTIONS as readonly (string | undefined)[]).includes(action)) return usage('token takes create NAME, list or revoke NAME');
    if (action === 'list') {
      if (names.length > 0) return usage('token list takes no arguments');
      const tokens = listTokens({ configFile: hubConfig() });
      if (values.json) opts.out(`${JSON.stringify({ tokens }, null, 2)}\n`);
      else {
        const rows = tokens.map((t) => [t.name, t.devices.join(','), t.services.join(','), t.source === 'tokens' ? t.createdAt : '(hub.yaml)']);
        opts.out(alignColumns([['NAME', 'DEVICES', 'SERVICES', 'CREATED'], ...rows]));
      }
      return 0;
    }
    if (names.length !== 1) return usage(`token ${action} takes exactly one NAME`);
    const configFile = hubConfig();
    if (action === 'revoke') {
      const r = revokeToken({ configFile, name: names[0]! });
      opts.out(`token ${names[0]} revoked (${r.file}); calls with it now get 401\n`);
      return 0;
    }
    const r = createToken({
      configFile,
      name: names[0]!,
      ...(values.devices !== undefined ? { devices: values.devices } : {}),
      ...(values.services !== undefined ? { services: values.services } : {}),
    });
    // The token alone on stdout (TOKEN=$(devstreams hub token create …) works); the rest on stderr.
    err(
      `token ${r.summary.name} created (devices ${r.summary.devices.join(',')}; services ${r.summary.services.join(',')}); ` +
        `stored hashed in ${r.file}. This is the only time it is shown.\n`,
    );
    opts.out(`${r.token}\n`);
    return 0;
  }

  if (positionals.length !== 1) return usage(`${sub} takes exactly one device ID`);
  if (sub === 'revoke-key' && values.slot === undefined) return usage('revoke-key needs --slot primary|secondary');
  const deviceId = positionals[0]!;
  const configFile = hubConfig();
  if (sub === 'rotate-key') {
    const r = rotateKey({ configFile, deviceId, slot: parseSlot(values.slot, 'secondary'), force: values.force === true });
    const broker = await syncBrokerAccountCli(configFile, { op: 'password', deviceId, keyFile: r.keyFile!, disabled: r.disabled });
    const other = r.slot === 'primary' ? 'secondary' : 'primary';
    const retire = r.otherSlotHasKey
      ? [`then retire the old key with:`, `  devstreams hub revoke-key ${deviceId} --slot ${other} --config ${configFile}`]
      : [];
    opts.out(
      [
        ...(broker
          ? // The broker account holds one password: whatever the slots say, the previous key is refused now.
            [
              broker,
              `new ${r.slot} key for ${deviceId} written to ${r.keyFile} (0600)`,
              `Copy it to the device's key file and reload its agent now (systemctl reload devstreams-agent, or kill -HUP its process):`,
              `the device is disconnected until it has the new key${retire.length ? ';' : ''}`,
            ]
          : [
              `new ${r.slot} key for ${deviceId} written to ${r.keyFile} (0600); ` +
                (r.otherSlotHasKey ? `the ${other} key still works` : `it replaced the device's only key: the device is cut off until it has this one`),
              `Copy it to the device's key file and reload its agent (systemctl reload devstreams-agent, or kill -HUP its process)${retire.length ? ';' : ''}`,
            ]),
        ...retire,
        '',
      ].join('\n'),
    );
    return 0;
  }
  if (sub === 'revoke-key') {
    const r = revokeKey({ configFile, deviceId, slot: parseSlot(values.slot, 'primary') });
    opts.out(`${r.slot} key of ${deviceId} revoked; a connection that used it was disconnected\n`);
    return 0;
  }
  if (sub === 'disable-device' || sub === 'enable-device') {
    const disable = sub === 'disable-device';
    const r = setDeviceDisabled({ configFile, deviceId, disabled: disable });
    // Synced even when nothing changed here: it repairs a broker account left behind by a failed run.
    const broker = await syncBrokerAccountCli(configFile, { op: disable ? 'disable' : 'enable', deviceId });
    if (broker) opts.out(`${broker}\n`);
    if (!r.changed) opts.out(`device ${deviceId} is already ${disable ? 'disabled' : 'enabled'}; nothing changed\n`);
    else opts.out(disable ? `device ${deviceId} disabled: disconnected and refused until enable-device\n` : `device ${deviceId} enabled\n`);
    return 0;
  }
  const r = removeDevice({ configFile, deviceId });
  const broker = await syncBrokerAccountCli(configFile, { op: 'remove', deviceId });
  if (broker) opts.out(`${broker}\n`);
  opts.out(`device ${deviceId} removed${r.removedFiles!.length ? ` (deleted ${r.removedFiles!.join(', ')})` : ''}\n`);
  return 0;
}

/** Rows as space-aligned columns, two spaces apart, as the service side's tables are. */
function alignColumns(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
