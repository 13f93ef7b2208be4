/**
 * `devstreams --help`: every command, the hub's included (each `devstreams hub` subcommand that
 * hub/cli.ts dispatches is listed; test/hub/cli.test.ts checks it against that table). Text only,
 * so that every role's program carries it without the hub's code.
 */
export const USAGE = `usage: devstreams COMMAND [ARGS]

On the hub's server. DIR is the folder hub init made (default ./.devstreams); the other hub commands
take --config F, F being DIR/hub.yaml (default ./.devstreams/hub.yaml):
  devstreams hub init [--dir DIR] [--listen HOST:PORT] [--public-url https://HOST[:PORT]]
                                 make DIR: hub.yaml, dev CA and certs, a service token; prints the
                                 export lines a service-side shell needs. --public-url: the URL
                                 devices dial (needed when --listen is not a loopback address)
  devstreams hub [--config DIR/hub.yaml] [--listen HOST:PORT]
                                 run the hub: API, relay and MQTT on one TLS port
  devstreams hub add-device ID [--allow NAME=[HOST:]PORT]... [--allow echo] [--config F]
                                 register a device; writes DIR/devices/ID.yaml, a ready agent config
  devstreams hub rotate-key ID [--slot primary|secondary] [--force] [--config F]
                                 a new key in a slot (default secondary); the other keeps working
                                 (--force: replace a device's only key)
  devstreams hub revoke-key ID --slot primary|secondary [--config F]
                                 retire a slot's key; its connection is closed
  devstreams hub disable-device ID [--config F]
                                 disconnect a device and refuse it until enable-device
  devstreams hub enable-device ID [--config F]
  devstreams hub remove-device ID [--config F]
                                 forget a device: its registry entry, DIR/devices/ID.yaml and .key
  devstreams hub token create NAME [--devices ID|GLOB,...] [--services NAME,...] [--config F]
                                 a scoped service token, printed once on stdout
  devstreams hub token list [--json] [--config F]
                                 names and scopes, never secrets
  devstreams hub token revoke NAME [--config F]

On the device:
  devstreams agent --config FILE run the device agent

Service side:
  devstreams connect DEVICE SERVICE
                                 stdin/stdout bridge: ssh -o ProxyCommand='devstreams connect %h ssh'
  devstreams forward DEVICE SERVICE --listen [HOST:]PORT
                                 local proxy: one stream per accepted connection
  devstreams echo DEVICE         round-trip check against the agent's built-in echo service
  devstreams devices | streams   fleet status; stream history (--device ID --since 1h --result R)
  devstreams device ID           one device in full: version, uptime, OS, board, load, disk, last error
  devstreams endpoints           the hub's public endpoints as JSON (for firewall rules)

Service-side commands take --hub URL --token TOKEN [--ca FILE], or DEVSTREAMS_HUB, DEVSTREAMS_TOKEN,
DEVSTREAMS_CA from the environment. "devstreams COMMAND --help" describes one command
("devstreams hub --help" the hub's, "devstreams hub SUBCOMMAND --help" one of them).
`;
