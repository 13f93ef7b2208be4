import { totalmem } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { DestinationStream } from 'pino';
import { RELAY_HEAP_THRESHOLDS, argsProblem, SdNotifier, createLogger, scavengeYoungBuffersEarly, systemdNotifyEnv, tuneGcForRelaying, type LogLevel, type SystemdNotifyEnv } from '../protocol/index.js';
import { Agent } from './agent.js';
import { loadAgentConfig, type AgentConfig } from './config.js';
import { gcModeFor } from './gc-mode.js';
import { warnIfInlineKeyConfigExposed } from './key-file-check.js';
import { proxyEnvFrom, proxyFor } from './proxy.js';
import { reloadFromFile } from './reload.js';

const USAGE = 'usage: devstreams agent --config FILE [--check | --reload]';
// Only what travels with the executable: no pointer to files of the source tree.
const HELP = `Runs the device agent with the YAML config FILE: hub (url, deviceId, keyFile, ca), the allowlist
(allow: everything else is denied), limits and log. \`devstreams hub add-device ID\` on the hub writes
a ready one, DIR/devices/ID.yaml, beside the device's key and ca.pem; the .deb installs a commented
example as /etc/devstreams/agent.yaml. A mistake in the file stops the agent with one line naming the
field. SIGHUP re-reads the allowlist, limits and key (the log says whether the file was taken:
"config reloaded" or "config reload refused"); SIGTERM lets open streams finish (shutdown.graceMs),
then exits. HTTPS_PROXY / NO_PROXY (read at start; HOST:PORT means http://HOST:PORT) or hub.proxy
send the hub connections through an HTTP proxy. --check only loads FILE (and HTTPS_PROXY) as a
start would, prints "FILE: ok" and exits 0, or prints the mistake and exits 2. --reload (the
systemd unit's ExecReload) checks FILE the same way and, only if it is good, sends SIGHUP to
systemd's $MAINPID, so that \`systemctl reload\` fails, with the mistake, on a file the agent would
refuse.
`;

export interface AgentCliOptions {
  /** Stops the agent when aborted, as SIGINT/SIGTERM do (for embedding and tests). */
  signal?: AbortSignal;
  /** Where the JSON log goes (default stdout). */
  logDestination?: DestinationStream;
  /** The environment HTTPS_PROXY / NO_PROXY are read from, once (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** systemd's NOTIFY_SOCKET/WATCHDOG_USEC/WATCHDOG_PID (default: read from process.env). */
  systemd?: SystemdNotifyEnv;
  /** The machine's memory, which `runtime.gc: auto` goes by (default os.totalmem()). */
  totalMemoryBytes?: number;
}

/**
 * `devstreams agent --config FILE`: loads the config (a ConfigError is thrown to the caller, which
 * prints it as one line), runs the agent, logs JSON to stdout, and on SIGINT/SIGTERM stops it and
 * resolves 0. Usage errors print one line on stderr and resolve 2.
 */
export async function runAgentCli(args: string[], opts: AgentCliOptions = {}): Promise<number> {
  let values: { config?: string | undefined; help?: boolean | undefined; check?: boolean | undefined; reload?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, check: { type: 'boolean' }, reload: { type: 'boolean' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`devstreams: agent: ${argsProblem(err)}; ${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n${HELP}`);
    return 0;
  }
  if (!values.config) {
    process.stderr.write(`devstreams: agent: --config FILE is required; ${USAGE}\n`);
    return 2;
  }

  if (values.reload) return reloadRunningAgent(values.config, opts.env ?? process.env);
  const config = loadAgentConfig(values.config);
  // HTTPS_PROXY, read once: an unusable value stops the agent here, before it logs a line, with a
  // ConfigError naming the variable (agent/proxy.ts proxyFor; the Agent makes the same choice).
  const proxyEnv = proxyEnvFrom(opts.env ?? process.env);
  proxyFor(new URL(config.hub.url), config.hub.proxy, proxyEnv);
  if (values.check) {
    process.stdout.write(`${values.config}: ok\n`);
    return 0;
  }
  const log = createLogger({
    name: 'devstreams-agent',
    level: config.log.level as LogLevel,
    ...(opts.logDestination ? { destination: opts.logDestination } : {}),
  });
  const memory = opts.totalMemoryBytes ?? totalmem();
  let gcMode = '';
  const applyGc = (c: AgentConfig): void => {
    const mode = gcModeFor(c.runtime.gc, memory);
    tuneGcForRelaying(mode === 'throughput');
    if (mode !== gcMode) log.info({ gc: mode, setting: c.runtime.gc, memoryMB: Math.round(memory / 2 ** 20) }, 'garbage collection mode');
    gcMode = mode;
  };
  applyGc(config);
  // The key in the config itself (hub.key): the config must be as private as a key file would be.
  warnIfInlineKeyConfigExposed(resolve(values.config), config.hub.keyFile, log);
  scavengeYoungBuffersEarly(); // in either mode (protocol/gc-tuning.ts)
  const agent = new Agent({
    config,
    log,
    proxyEnv,
    // Throughput mode trades memory for CPU here too (protocol/malloc-trim.ts).
    keepFreedWhileBusy: () => (gcMode === 'throughput' ? RELAY_HEAP_THRESHOLDS : null),
  });
  const configFile = values.config;
  // SIGHUP: re-read the file; allowlist and limits apply to the next request, an invalid file is refused.
  const reload = (c: AgentConfig): void => {
    agent.reload(c);
    applyGc(c);
  };
  const onHup = (): void => void reloadFromFile(configFile, loadAgentConfig, reload, log);
  process.on('SIGHUP', onHup);
  // systemd (Type=notify): READY=1 once the first connection attempt is under way, WATCHDOG=1 while
  // the event loop is healthy, STATUS= with the control channel and streams, STOPPING=1 at the end.
  const notify = new SdNotifier({
    env: opts.systemd ?? systemdNotifyEnv(process.env),
    log,
    status: () => `control channel ${agent.connected ? 'connected' : 'connecting'}; ${agent.openStreams} streams open`,
  });

  let onSignal: (sig: NodeJS.Signals | 'abort') => void = () => {};
  const stopRequested = new Promise<string>((resolve) => (onSignal = resolve));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  if (opts.signal?.aborted) onSignal('abort');
  else opts.signal?.addEventListener('abort', () => onSignal('abort'), { once: true });

  try {
    await agent.start();
    notify.ready();
    const why = await stopRequested;
    log.info({ signal: why }, 'agent stopping');
    await notify.stopping();
    await agent.drain(); // new requests 503, open streams get shutdown.graceMs to finish
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onHup);
    notify.stop();
    await agent.stop();
  }
  return 0;
}

/**
 * `--reload`, systemd's ExecReload: the file is loaded first (a ConfigError goes to the caller,
 * exit 2, and the running agent is not signalled), then the agent named by $MAINPID, which systemd
 * sets for ExecReload, gets SIGHUP. No /bin/kill: minimal roots have none.
 */
function reloadRunningAgent(file: string, env: NodeJS.ProcessEnv): number {
  loadAgentConfig(file);
  const pid = Number(env.MAINPID);
  if (!Number.isInteger(pid) || pid <= 1) {
    process.stderr.write('devstreams: agent: --reload signals the agent systemd runs ($MAINPID is not set); elsewhere send it SIGHUP\n');
    return 2;
  }
  process.kill(pid, 'SIGHUP');
  process.stdout.write(`${file}: ok, agent ${pid} signalled to reload\n`);
  return 0;
}
