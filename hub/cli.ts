import { parseArgs } from 'node:util';
import type { DestinationStream } from 'pino';
import { IdleMemoryReclaimer, argsProblem, RELAY_HEAP_THRESHOLDS, SdNotifier, createLogger, scavengeYoungBuffersEarly, systemdNotifyEnv, tuneGcForRelaying, type SystemdNotifyEnv } from '../protocol/index.js';
import { addDevice } from './add-device.js';
import { ADMIN_COMMANDS, ADMIN_USAGE, runAdminCommand } from './admin-cli.js';
import { subcommandHelp } from './command-usage.js';
import { syncBrokerAccountCli } from './mosquitto-sync.js';
import { loadHubConfig } from './config.js';
import { hubConfigPath } from './config-path.js';
import { Hub } from './hub.js';
import { DEFAULT_HUB_DIR, initHub } from './init.js';
import { runningPublicUrlWarning } from './public-url.js';
import { secretFileWarnings } from './secret-file-modes.js';

const USAGE = `usage: devstreams hub init [--dir DIR] [--listen HOST:PORT] [--public-url https://HOST[:PORT]]
       devstreams hub [--config DIR/hub.yaml] [--listen HOST:PORT]
       devstreams hub add-device ID [--config DIR/hub.yaml] [--allow NAME=[HOST:]PORT]... [--allow echo]
${ADMIN_USAGE}
Without --config the commands read ${DEFAULT_HUB_DIR}/hub.yaml under the current directory. A hub that
other machines reach needs publicUrl in hub.yaml (hub init --public-url writes it) before add-device.`;

export interface HubCliOptions {
  /** Stops a running hub when aborted, as SIGINT/SIGTERM do (for embedding and tests). */
  signal?: AbortSignal;
  /** Where the running hub's JSON log goes (default stdout). */
  logDestination?: DestinationStream;
  /** Where init and add-device print (default process.stdout). */
  out?: (text: string) => void;
  /** Where warnings and the admin commands' notes go (default process.stderr). */
  err?: (text: string) => void;
  /** Called once the hub accepts connections (for embedding and tests). */
  onStarted?: (hub: Hub) => void;
  /** systemd's NOTIFY_SOCKET/WATCHDOG_USEC/WATCHDOG_PID (default: read from process.env). */
  systemd?: SystemdNotifyEnv;
}

type Print = (text: string) => void;
type Subcommand = (args: string[], io: { out: Print; err: Print }) => number | Promise<number>;

/** Every `devstreams hub SUBCOMMAND`; anything else runs the hub. The top-level usage lists each one. */
const SUBCOMMANDS: Readonly<Record<string, Subcommand>> = {
  init: runInit,
  'add-device': runAddDevice,
  ...Object.fromEntries(ADMIN_COMMANDS.map((c): [string, Subcommand] => [c, (args, io) => runAdminCommand(c, args, io)])),
};
export const HUB_SUBCOMMANDS: readonly string[] = Object.keys(SUBCOMMANDS);

/**
 * `devstreams hub …`: `init`, `add-device`, the admin commands, or run the hub. Resolves to the exit
 * code. A bad config throws its ConfigError (one line naming the file, field and problem; the
 * dispatcher exits 2); a usage error prints one line on stderr and resolves 2.
 */
export async function runHubCli(args: string[], opts: HubCliOptions = {}): Promise<number> {
  const out = opts.out ?? ((text: string) => void process.stdout.write(text));
  const err = opts.err ?? ((text: string) => void process.stderr.write(text));
  const [sub, ...rest] = args;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    out(`${USAGE}\n`);
    return 0;
  }
  try {
    if (sub !== undefined && Object.hasOwn(SUBCOMMANDS, sub)) {
      const help = subcommandHelp(sub, rest);
      if (help !== null) {
        out(`${help}\n`);
        return 0;
      }
      return await SUBCOMMANDS[sub]!(rest, { out, err });
    }
    return await runHub(args, opts);
  } catch (e) {
    if (e instanceof UsageProblem) {
      err(`devstreams: hub: ${e.message} (see devstreams hub --help)\n`);
      return 2;
    }
    throw e;
  }
}

class UsageProblem extends Error {}

/** systemd's STATUS= line: "1 device online; 3 streams open". */
export function hubStatusText(devicesOnline: number, streamsOpen: number): string {
  const n = (count: number, one: string): string => `${count} ${one}${count === 1 ? '' : 's'}`;
  return `${n(devicesOnline, 'device')} online; ${n(streamsOpen, 'stream')} open`;
}

export const SIGHUP_WARNING =
  'SIGHUP ignored: the hub does not re-read hub.yaml on SIGHUP (registry.json and tokens.json are re-read by themselves ' +
  'when they change); restart the hub to apply changes to hub.yaml (systemctl restart devstreams-hub)';

type Options = NonNullable<Parameters<typeof parseArgs>[0]>['options'];
interface Parsed {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

function parse(args: string[], options: Options, positionals: boolean): Parsed {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: positionals });
  } catch (err) {
    throw new UsageProblem(argsProblem(err));
  }
}

function runInit(args: string[], { out, err }: { out: Print; err: Print }): number {
  const { values } = parse(args, { dir: { type: 'string' }, listen: { type: 'string' }, 'public-url': { type: 'string' } }, false);
  const result = initHub({
    dir: (values.dir as string | undefined) ?? DEFAULT_HUB_DIR,
    ...(values.listen !== undefined ? { listen: values.listen as string } : {}),
    ...(values['public-url'] !== undefined ? { publicUrl: values['public-url'] as string } : {}),
  });
  for (const w of result.warnings) err(`devstreams: hub init: ${w}\n`);
  out(
    [
      `devstreams hub initialised in ${result.dir}`,
      `  config:        ${result.configFile}`,
      `  service token: ${result.tokenFile} (0600)`,
      `  CA:            ${result.caFile}`,
      '',
      'Run the hub:',
      `  devstreams hub --config ${result.configFile}`,
      'Register a device:',
      `  devstreams hub add-device DEVICE-ID --config ${result.configFile}`,
      'In a service-side shell:',
      ...result.exportLines.map((l) => `  ${l}`),
      '',
    ].join('\n'),
  );
  return 0;
}

async function runAddDevice(args: string[], { out }: { out: Print }): Promise<number> {
  const { values, positionals } = parse(
    args,
    { config: { type: 'string', short: 'c' }, allow: { type: 'string', multiple: true } },
    true,
  );
  if (positionals.length !== 1) throw new UsageProblem('add-device takes exactly one device ID');
  const configFile = hubConfigPath(values.config as string | undefined);
  const result = addDevice({
    configFile,
    deviceId: positionals[0]!,
    allow: (values.allow as string[] | undefined) ?? [],
  });
  out(
    [
      `device ${result.deviceId} registered`,
      `  agent config: ${result.agentConfigFile}`,
      `  device key:   ${result.keyFile} (0600)`,
      ...(result.caFile ? [`  CA:           ${result.caFile}`] : []),
      ...[await syncBrokerAccountCli(configFile, { op: 'add', deviceId: result.deviceId, keyFile: result.keyFile })].filter((l) => l !== null),
      `Copy these files to the device and run: devstreams agent --config ${result.deviceId}.yaml`,
      '',
    ].join('\n'),
  );
  return 0;
}

async function runHub(args: string[], opts: HubCliOptions): Promise<number> {
  const { values } = parse(args, { config: { type: 'string', short: 'c' }, listen: { type: 'string' } }, false);
  if (values.help) {
    (opts.out ?? ((t: string) => void process.stdout.write(t)))(`${USAGE}\n`);
    return 0;
  }
  const file = hubConfigPath(values.config as string | undefined);
  const { config, file: configFile } = loadHubConfig(file, {
    ...(values.listen !== undefined ? { listen: values.listen as string } : {}),
  });
  const log = createLogger({
    name: 'devstreams-hub',
    level: config.log.level,
    ...(opts.logDestination ? { destination: opts.logDestination } : {}),
  });
  for (const w of secretFileWarnings(config, configFile)) log.warn(w);
  tuneGcForRelaying(); // the hub carries every stream (protocol/gc-tuning.ts)
  scavengeYoungBuffersEarly();
  // With no stream for 10 s: glibc's malloc_trim (protocol/idle-memory.ts), so a hub gives back
  // what a busy period took instead of keeping its peak. No forced collection: see `collect` there.
  const reclaimer = new IdleMemoryReclaimer({
    busy: () => hub.relay.activeCount() > 0,
    log,
    collect: null,
    keepWhileBusy: () => RELAY_HEAP_THRESHOLDS, // glibc keeps freed buffers while streams are open (protocol/malloc-trim.ts)
  });
  const hub: Hub = new Hub({
    config,
    log,
    streamsChanged: () => reclaimer.poke(),
    configFile,
    listenFlag: values.listen !== undefined,
  });
  // systemd (Type=notify): READY=1 once listening, WATCHDOG=1 while the event loop is healthy,
  // STATUS= with devices online and streams open, STOPPING=1 at the end.
  const notify = new SdNotifier({
    env: opts.systemd ?? systemdNotifyEnv(process.env),
    log,
    status: () => hubStatusText(hub.presence.onlineCount(), hub.relay.activeCount()),
  });

  let onStop: (why: string) => void = () => {};
  const stopRequested = new Promise<string>((resolve) => (onStop = resolve));
  const onSignal = (sig: NodeJS.Signals): void => onStop(sig);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // Node's default for SIGHUP ends the process at once (no drain, streams cut), and admins send it
  // expecting a reload, as the agent does. The hub has nothing to reload from it: registry.json and
  // tokens.json are re-read whenever they change, and hub.yaml only at start.
  const onHangup = (): void => log.warn(SIGHUP_WARNING);
  process.on('SIGHUP', onHangup);
  if (opts.signal?.aborted) onStop('abort');
  else opts.signal?.addEventListener('abort', () => onStop('abort'), { once: true });

  try {
    await hub.start();
    const noPublicUrl = runningPublicUrlWarning(config);
    if (noPublicUrl) log.warn({ listen: config.listen }, noPublicUrl);
    opts.onStarted?.(hub);
    notify.ready();
    reclaimer.poke(); // start-up's garbage goes once the hub has been idle a while
    const why = await stopRequested;
    log.info({ signal: why }, 'hub stopping');
    await notify.stopping();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onHangup);
    notify.stop();
    reclaimer.stop();
    await hub.stop();
  }
  return 0;
}
