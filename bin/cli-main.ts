import { ConfigError, DEVSTREAMS_VERSION, nameProcess } from '../protocol/index.js';
import { USAGE } from './usage.js';

/**
 * The one command line (loaded by bin/devstreams.ts once V8's compile cache is on): `hub` and
 * `agent` load their modules on demand; the rest is service-side.
 *
 * The single executable holds this program three times, once per role (scripts/build-binary.mjs
 * defines `__DEVSTREAMS_ROLE__`), and compiles only the one its command needs: the other roles'
 * code is left out of each by the conditions below, which esbuild folds.
 */
declare const __DEVSTREAMS_ROLE__: 'hub' | 'agent' | 'service' | undefined;

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === undefined) {
    // No command is a usage error, as a wrong one is: the usage on stderr, status 2.
    process.stderr.write(USAGE);
    return 2;
  }
  if (command === '--version' || command === '-V') {
    process.stdout.write(`devstreams ${DEVSTREAMS_VERSION} (node ${process.version})\n`);
    return 0;
  }
  // The ones that run a while are `devstreams` in ps and top, not Node 24's "MainThread"
  // (protocol/process-name.ts); connect loads the native helper anyway, for its pipes.
  const named = ['agent', 'forward', 'connect'].includes(command) || (command === 'hub' && (args[0] === undefined || args[0].startsWith('-')));
  if (named) nameProcess();
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
