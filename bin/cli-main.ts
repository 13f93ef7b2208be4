import { ConfigError, DEVSTREAMS_VERSION, nameProcess } from '../protocol/index.js';

/**
 * The one command line (loaded by bin/devstreams.ts once V8's compile cache is on): `hub` and
 * `agent` load their modules on demand; the rest is service-side.
 *
 * The single executable holds this program three times, once per role (scripts/build-binary.mjs
 * defines `__DEVSTREAMS_ROLE__`), and compiles only the one its command needs: the other roles'
 * code is left out of each by the conditions below, which esbuild folds.
 */
declare const __DEVSTREAMS_ROLE__: 'hub' | 'agent' | 'service' | undefined;

const USAGE = `usage: devstreams COMMAND [ARGS]

  devstreams hub init [--dir DIR] [--listen HOST:PORT]
                                 make DIR (default ./.devstreams): hub.yaml, dev CA and certs, a service
                                 token; prints the export lines a service-side shell needs
  devstreams hub [--config DIR/hub.yaml] [--listen HOST:PORT]
                                 run the hub: API, relay and MQTT on one TLS port
  devstreams hub add-device ID [--config F]
                                 register a device; writes DIR/devices/ID.yaml, a ready agent config
  devstreams agent --config FILE run the device agent
  devstreams connect DEVICE SERVICE
                                 stdin/stdout bridge: ssh -o ProxyCommand='devstreams connect %h ssh'
  devstreams forward DEVICE SERVICE --listen [HOST:]PORT
                                 local proxy: one stream per accepted connection
  devstreams echo DEVICE         round-trip check against the agent's built-in echo service
  devstreams devices | streams   fleet status; stream history (--device ID --since 1h --result R)
  devstreams device ID           one device in full: version, uptime, OS, board, load, disk, last error
  devstreams endpoints           the hub's public endpoints as JSON (for firewall rules)

Service-side commands take --hub URL --token TOKEN [--ca FILE], or DEVSTREAMS_HUB, DEVSTREAMS_TOKEN,
DEVSTREAMS_CA from the environment. "devstreams COMMAND --help" describes one command.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === '--version' || command === '-V') {
    process.stdout.write(`devstreams ${DEVSTREAMS_VERSION} (node ${process.version})\n`);
    return 0;
  }
  // The long-running ones are `devstreams` in ps and top, not Node 24's "MainThread" (protocol/process-name.ts).
  if (command === 'agent' || command === 'forward' || (command === 'hub' && (args[0] === undefined || args[0].startsWith('-')))) nameProcess();
  if (command === 'hub') {
    return typeof __DEVSTREAMS_ROLE__ === 'undefined' || __DEVSTREAMS_ROLE__ === 'hub' ? (await import('../hub/cli.js')).runHubCli(args) : notHere(command);
  }
  if (command === 'agent') {
    return typeof __DEVSTREAMS_ROLE__ === 'undefined' || __DEVSTREAMS_ROLE__ === 'agent' ? (await import('../agent/cli.js')).runAgentCli(args) : notHere(command);
  }
  const service = typeof __DEVSTREAMS_ROLE__ === 'undefined' || __DEVSTREAMS_ROLE__ === 'service' ? await import('../service/cli.js') : notHere(command);
  if (service.isServiceCommand(command)) return service.runServiceCli(command, args);
  process.stderr.write(`devstreams: unknown command ${JSON.stringify(command)} (see devstreams --help)\n`);
  return 2;
}

/** A command that the executable's main script sent to the wrong role's script: a build fault, never a user's. */
function notHere(command: string): never {
  throw new Error(`internal error: the ${String(__DEVSTREAMS_ROLE__)} program cannot run ${JSON.stringify(command)}`);
}

/** One line per failure: `devstreams: <message>`; 2 for a bad config or command line, 1 otherwise. */
function report(err: unknown): number {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`devstreams: ${message.split('\n')[0]}\n`);
  // A DevstreamsError (hub unreachable, refused query) and anything unexpected: 1. No stack traces.
  return err instanceof ConfigError ? 2 : 1;
}

/** Exits once what was written to stdout has been handed to the OS. */
function exit(code: number): void {
  process.exitCode = code;
  const out = process.stdout;
  if (out.writableEnded || out.destroyed) process.exit(code);
  else out.write('', () => process.exit(code));
}

// A reader that went away (`devstreams streams | head`) ends the command quietly; `connect`
// handles its stdout itself (the stream fails and it exits 1).
if (process.argv[2] !== 'connect') {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(1);
  });
}

main(process.argv.slice(2)).then(exit, (err: unknown) => exit(report(err)));
