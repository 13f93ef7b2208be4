/**
 * `devstreams hub SUBCOMMAND --help`: each subcommand's own usage (test/hub/admin-help.test.ts walks
 * the dispatch table of hub/cli.ts and checks every entry has one). `devstreams hub --help` prints
 * the summary of all of them (hub/cli.ts USAGE).
 */

const CONFIG = `  --config F        the hub's config, DIR/hub.yaml of the folder hub init made
                    (default ./.devstreams/hub.yaml); -c F is the same`;
const ACTS = 'It acts on a running hub at once: the hub re-reads registry.json when it changes.';

const TOKEN_USAGE: Readonly<Record<string, string>> = {
  create: `usage: devstreams hub token create NAME [--devices ID|GLOB,...] [--services NAME,...] [--config F]

Makes a named, scoped service token and prints it once, alone on stdout (TOKEN=$(...) works); only
its SHA-256 digest is kept, in tokens.json.
  --devices LIST    device ids or globs (* and ?) it may reach (default: every device)
  --services LIST   the exact service strings a request may name (default: every service)
${CONFIG}`,
  list: `usage: devstreams hub token list [--json] [--config F]

Lists the service tokens: names, scopes and creation times, never secrets.
  --json            as JSON
${CONFIG}`,
  revoke: `usage: devstreams hub token revoke NAME [--config F]

Deletes a service token from tokens.json; the next call with it gets 401.
${CONFIG}`,
};

export const COMMAND_USAGE: Readonly<Record<string, string>> = {
  init: `usage: devstreams hub init [--dir DIR] [--listen HOST:PORT] [--public-url https://HOST[:PORT]]

Makes a hub folder: hub.yaml, a development CA and the hub's certificate, registry.json, tokens.json
and a first service token (DIR/service.token, 0600); prints the export lines a service-side shell
needs. Refuses a folder that already has a hub.yaml.
  --dir DIR         the folder to make (default ./.devstreams)
  --listen H:P      where the hub listens (default 127.0.0.1:8443)
  --public-url URL  the https URL devices and services dial; needed when --listen is not a
                    loopback address`,
  'add-device': `usage: devstreams hub add-device ID [--allow NAME=[HOST:]PORT]... [--allow echo] [--config F]

Registers a device and writes the files to copy to it: DIR/devices/ID.yaml (a ready agent config),
DIR/devices/ID.key (its key, 0600) and DIR/devices/ca.pem. ${ACTS}
  --allow NAME=[HOST:]PORT  a service the device offers (host default 127.0.0.1); repeatable
  --allow echo              the built-in echo service (for devstreams echo)
${CONFIG}`,
  'rotate-key': `usage: devstreams hub rotate-key ID [--slot primary|secondary] [--force] [--config F]

Puts a new key into a slot (default secondary) and writes it to DIR/devices/ID.key; the key in the
other slot keeps working, so: copy the file to the device, reload its agent (systemctl reload
devstreams-agent, or kill -HUP), then revoke-key the old slot. A device connected with the slot's
previous key is disconnected.
  --slot S          primary or secondary (default secondary)
  --force           replace the slot's key even when the other slot is empty (the device is cut
                    off until it has the new key)
${CONFIG}
With mqtt.accounts: mosquitto-dynsec the broker account's password becomes the new key at once: the
previous key stops working at the broker, whatever the slot.`,
  'revoke-key': `usage: devstreams hub revoke-key ID --slot primary|secondary [--config F]

Empties a key slot: that key stops working at once, and a connection that used it is closed. The
last key of a device cannot be revoked (disable-device instead).
  --slot S          primary or secondary
${CONFIG}`,
  'disable-device': `usage: devstreams hub disable-device ID [--config F]

Disconnects a device at once and refuses it until enable-device. ${ACTS}
${CONFIG}`,
  'enable-device': `usage: devstreams hub enable-device ID [--config F]

Lets a disabled device connect again. ${ACTS}
${CONFIG}`,
  'remove-device': `usage: devstreams hub remove-device ID [--config F]

Forgets a device: its registry entry, DIR/devices/ID.yaml and ID.key; it is disconnected at once.
${CONFIG}`,
  token: `usage: devstreams hub token create NAME [--devices ID|GLOB,...] [--services NAME,...] [--config F]
       devstreams hub token list [--json] [--config F]
       devstreams hub token revoke NAME [--config F]

Named, scoped service tokens in tokens.json (digests only); the hub re-reads it when it changes.
"devstreams hub token ACTION --help" describes one action.`,
};

/** The usage to print when the arguments of `devstreams hub SUB ...` ask for help, else null. */
export function subcommandHelp(sub: string, args: readonly string[]): string | null {
  if (!args.includes('--help') && !args.includes('-h')) return null;
  if (sub === 'token' && args[0] !== undefined && Object.hasOwn(TOKEN_USAGE, args[0])) return TOKEN_USAGE[args[0]]!;
  return COMMAND_USAGE[sub] ?? null;
}
