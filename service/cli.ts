import { LIMITS, scavengeYoungBuffersEarly, tuneGcForRelaying } from '../protocol/index.js';
import { endOnSignals, runConnect } from './connect.js';
import { makeContext } from './context.js';
import { runEcho } from './echo.js';
import { runDevice, runDevices, runEndpoints, runStreams } from './fleet.js';
import { runForward } from './forward-command.js';
import { HUB_OPTIONS, UsageError, intOption, parseCommand, parseListen } from './options.js';

export const SERVICE_COMMANDS = ['connect', 'forward', 'echo', 'devices', 'device', 'streams', 'endpoints'] as const;
export type ServiceCommand = (typeof SERVICE_COMMANDS)[number];

export function isServiceCommand(command: string): command is ServiceCommand {
  return (SERVICE_COMMANDS as readonly string[]).includes(command);
}

const COMMON_HELP = `
Hub options (or the environment):
  --hub URL        hub base URL, https://HOST[:PORT], no path (DEVSTREAMS_HUB)
  --token TOKEN    service token                   (DEVSTREAMS_TOKEN; prefer it: flags show in ps)
  --ca FILE        PEM CA that signed the hub's certificate (DEVSTREAMS_CA)
  -v, --verbose    log at info (logs go to stderr as JSON lines)
`;

const HELP: Record<ServiceCommand, string> = {
  connect: `usage: devstreams connect DEVICE SERVICE [--timeout MS]
Bridges stdin/stdout to SERVICE on DEVICE, for ssh:
  ssh -o ProxyCommand='devstreams connect %h ssh' user@DEVICE
  --timeout MS     handshake deadline asked of the hub, 1000-600000; the hub lowers it to its own
                   maximum (handshake.maxTimeoutMs, 300000 by default). Default: the hub's, 60 s
SIGHUP (how ssh ends its ProxyCommand), SIGTERM or SIGINT ends the session: the stream is closed
normally (the hub records it ok) and connect exits 0 (1 if the stream was not open yet).
Exit status 0 when the stream ended cleanly, 1 otherwise.
`,
  forward: `usage: devstreams forward DEVICE SERVICE --listen [HOST:]PORT [--timeout MS]
Listens on HOST:PORT (HOST default 127.0.0.1, PORT 0 picks one) and forwards each accepted
connection to SERVICE on DEVICE over its own stream; prints "listening on HOST:PORT -> DEVICE/SERVICE".
It asks the hub first: a token the hub refuses, a device it does not know, or a device or service
the token's scope leaves out, ends it (exit 1). A connection whose stream is refused or fails is
reset, with one line on stderr; a refusal 401 UNAUTHORIZED (the token revoked) ends forward too
(exit 1): every later connection would get it.
Runs until SIGINT or SIGTERM (exit 0). Connections still open then are cut: "closing N open
connections" on stderr says so.
  --timeout MS     handshake deadline asked of the hub for each stream, 1000-600000; the hub
                   lowers it to its own maximum (handshake.maxTimeoutMs, 300000 by default).
                   Default: the hub's, 60 s
`,
  echo: `usage: devstreams echo DEVICE [--bytes N] [--service NAME] [--timeout MS]
Sends N random bytes (default 1048576) to the device's echo service (default "echo"), reads them
back and compares; prints "echo ok: N bytes, set-up X ms, round trip Y ms".
  --timeout MS     handshake deadline asked of the hub, as connect's (1000-600000)
`,
  devices: `usage: devstreams devices [--json]
Lists the hub's devices: ID, STATE, LAST SEEN, VERSION, SYSTEM UPTIME, STREAMS (or the JSON array with --json).
SYSTEM UPTIME is the device's, since it booted (\`device ID\` has the agent's too).
`,
  device: `usage: devstreams device ID [--json]
Shows one device in full: state, version, system and agent uptime, OS, kernel, board, load, temperature, memory,
disk, interfaces and its last error, from the status it last sent (or the JSON object with --json).
`,
  streams: `usage: devstreams streams [--device ID] [--since AGE|DATE] [--result RESULT] [--limit N] [--json]
Lists the hub's stream history, newest first: who asked, result, code, who closed, duration,
bytes each way, and the reason of a stream that was not ok (cut at 60 characters; --json has it
whole, with the HTTP status).
  --device ID      only this device's streams
  --since AGE      opened within AGE (30s, 15m, 1h, 7d) or since a date (2024-05-01T12:00:00Z)
  --result RESULT  ok, refused, timeout, unpaired or error
  --limit N        at most N records (default and maximum 1000)
`,
  endpoints: `usage: devstreams endpoints
Prints the hub's public endpoints as JSON (API, the one-request stream upgrade, the stream relay,
the multiplexed relay for services and devices, MQTT over WebSocket, MQTTS if enabled) and the TCP
ports they use, for firewall rules.
`,
};

const TIMEOUT = { timeout: { type: 'string' } } as const;
const timeoutOf = (v: string | undefined): number | undefined =>
  intOption('timeout', v, undefined, LIMITS.minHandshakeMs, LIMITS.maxHandshakeMs);

/**
 * The service-side commands: connect, forward, echo, devices, streams. Returns the exit code. A
 * refused stream is reported here as one line (`devstreams: DEVICE/SERVICE refused: STATUS CODE:
 * reason`, exit 1); usage errors throw UsageError (a ConfigError) and other failures throw, for
 * the dispatcher to print as `devstreams: <message>`.
 */
export async function runServiceCli(command: string, args: string[]): Promise<number> {
  if (!isServiceCommand(command)) throw new UsageError(`unknown command ${JSON.stringify(command)} (see devstreams --help)`);
  switch (command) {
    case 'connect': {
      const { values, positionals } = parseCommand(command, args, { ...HUB_OPTIONS, ...TIMEOUT }, ['DEVICE', 'SERVICE']);
      if (values.help) return help(command);
      const timeoutMs = timeoutOf(values.timeout);
      tuneGcForRelaying(); // this process only carries the stream (protocol/gc-tuning.ts)
      scavengeYoungBuffersEarly();
      // One stream per process: the open-and-connect upgrade is one round trip less than a
      // multiplexed connection and its OPEN.
      const ctx = makeContext(values, process.env, { multiplex: false });
      return runConnect(ctx, positionals[0]!, positionals[1]!, timeoutMs, undefined, endOnSignals());
    }
    case 'forward': {
      const opts = { ...HUB_OPTIONS, ...TIMEOUT, listen: { type: 'string', short: 'l' } } as const;
      const { values, positionals } = parseCommand(command, args, opts, ['DEVICE', 'SERVICE']);
      if (values.help) return help(command);
      if (values.listen === undefined) throw new UsageError('forward: --listen [HOST:]PORT is required');
      const listen = parseListen(values.listen);
      const timeoutMs = timeoutOf(values.timeout);
      tuneGcForRelaying(); // this process only carries streams (protocol/gc-tuning.ts)
      scavengeYoungBuffersEarly();
      return runForward(makeContext(values), positionals[0]!, positionals[1]!, listen, timeoutMs);
    }
    case 'echo': {
      const opts = { ...HUB_OPTIONS, ...TIMEOUT, bytes: { type: 'string' }, service: { type: 'string' } } as const;
      const { values, positionals } = parseCommand(command, args, opts, ['DEVICE']);
      if (values.help) return help(command);
      const bytes = intOption('bytes', values.bytes, 1024 * 1024, 0, 2 ** 40)!;
      const timeoutMs = timeoutOf(values.timeout);
      // On a terminal, how far it is every 2 s: a large --bytes takes minutes.
      const progress = process.stderr.isTTY ? { everyMs: 2000, line: (t: string) => void process.stderr.write(`devstreams: ${t}\n`) } : undefined;
      return runEcho(makeContext(values, process.env, { multiplex: false }), positionals[0]!, values.service ?? 'echo', bytes, timeoutMs, progress);
    }
    case 'devices':
    case 'endpoints': {
      const { values } = parseCommand(command, args, { ...HUB_OPTIONS, json: { type: 'boolean' } }, []);
      if (values.help) return help(command);
      const ctx = makeContext(values);
      return command === 'devices' ? runDevices(ctx, values.json === true) : runEndpoints(ctx);
    }
    case 'device': {
      const { values, positionals } = parseCommand(command, args, { ...HUB_OPTIONS, json: { type: 'boolean' } }, ['ID']);
      if (values.help) return help(command);
      return runDevice(makeContext(values), positionals[0]!, values.json === true);
    }
    case 'streams': {
      const opts = {
        ...HUB_OPTIONS,
        json: { type: 'boolean' },
        device: { type: 'string' },
        since: { type: 'string' },
        result: { type: 'string' },
        limit: { type: 'string' },
      } as const;
      const { values } = parseCommand(command, args, opts, []);
      if (values.help) return help(command);
      const filter = { device: values.device, since: values.since, result: values.result, limit: values.limit };
      return runStreams(makeContext(values), values.json === true, filter);
    }
  }
}

function help(command: ServiceCommand): number {
  process.stdout.write(HELP[command] + COMMON_HELP);
  return 0;
}
