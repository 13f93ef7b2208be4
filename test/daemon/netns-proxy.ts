import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CliProcess } from '../helpers/proc.js';

const run = promisify(execFile);

/**
 * Why the proxy end-to-end test cannot run here, or null: it needs root, `ip netns` (a namespace
 * is created and deleted to find out) and Debian's tinyproxy.
 */
export function netnsProxySkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (ip netns add)';
  const tp = spawnSync('tinyproxy', ['-v'], { encoding: 'utf8', timeout: 5000 });
  if (tp.error || tp.status !== 0) return 'tinyproxy is not installed (apt-get install tinyproxy)';
  const probe = `dsprobe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8', timeout: 5000 });
  if (add.error || add.status !== 0) return `ip netns is unavailable: ${add.error?.message ?? add.stderr.trim()}`;
  spawnSync('ip', ['netns', 'delete', probe], { timeout: 5000 });
  return null;
}

/**
 * A network namespace joined to the host by one veth pair and nothing else: a /30 between
 * `hostAddr` (host side) and `nsAddr` (namespace side), the namespace's own loopback up, no default
 * route. From inside, only `hostAddr` is reachable; 127.0.0.1 is the namespace's own loopback.
 */
export class Netns {
  readonly name = `dsproxy-${process.pid}`;
  private readonly hostIf = `dspx${process.pid % 1_000_000}h`;
  private readonly nsIf = `dspx${process.pid % 1_000_000}n`;
  /** 10.213.N.0/30, N from the pid, so two runs at once do not collide. */
  private readonly net = `10.213.${(process.pid % 250) + 1}`;
  readonly hostAddr = `${this.net}.1`;
  readonly nsAddr = `${this.net}.2`;

  async start(): Promise<this> {
    await this.stop(); // a namespace left by a killed run with the same pid
    await ip('netns', 'add', this.name);
    await ip('link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', this.nsIf);
    await ip('link', 'set', this.nsIf, 'netns', this.name);
    await ip('addr', 'add', `${this.hostAddr}/30`, 'dev', this.hostIf);
    await ip('link', 'set', this.hostIf, 'up');
    await ip('-n', this.name, 'addr', 'add', `${this.nsAddr}/30`, 'dev', this.nsIf);
    await ip('-n', this.name, 'link', 'set', this.nsIf, 'up');
    await ip('-n', this.name, 'link', 'set', 'lo', 'up');
    return this;
  }

  /** The command prefix that runs a program inside the namespace. */
  exec(...cmd: string[]): string[] {
    return ['ip', 'netns', 'exec', this.name, ...cmd];
  }

  /**
   * A plain TCP connect from inside the namespace: 'connected', an error code (ECONNREFUSED,
   * ENETUNREACH, ...) or 'timeout' (3 s).
   */
  async tcpConnect(host: string, port: number): Promise<string> {
    const script =
      "const s=require('net').connect({host:process.argv[1],port:+process.argv[2],timeout:3000});" +
      "s.on('connect',()=>{console.log('connected');s.destroy()});" +
      "s.on('timeout',()=>{console.log('timeout');s.destroy()});" +
      "s.on('error',(e)=>console.log(e.code||e.message));";
    const [cmd, ...args] = this.exec(process.execPath, '-e', script, host, String(port));
    const { stdout } = await run(cmd!, args, { timeout: 15_000 });
    return stdout.trim();
  }

  /** Idempotent: deleting the namespace deletes its end of the veth pair, and so the pair. */
  async stop(): Promise<void> {
    await ip('netns', 'delete', this.name).catch(() => {});
    await ip('link', 'delete', this.hostIf).catch(() => {});
  }
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', args, { timeout: 10_000 });
}

export interface TinyproxyOptions {
  listen: string;
  port: number;
  /** Client addresses allowed to use the proxy. */
  allow: string[];
  /** Ports CONNECT may reach (tinyproxy refuses any other). */
  connectPorts: number[];
  /** Proxy credentials required of every request. */
  basicAuth?: { user: string; password: string };
}

/**
 * Debian's tinyproxy in the foreground with a generated config, its log (LogLevel Info) on stderr
 * captured line by line.
 */
export class Tinyproxy {
  private readonly dir = mkdtempSync(join(tmpdir(), 'devstreams-tinyproxy-'));
  proc: CliProcess | undefined;

  constructor(readonly opts: TinyproxyOptions) {}

  async start(): Promise<this> {
    const { listen, port, allow, connectPorts, basicAuth } = this.opts;
    const conf = [
      `Port ${port}`,
      `Listen ${listen}`,
      'Timeout 120',
      'LogLevel Info',
      'MaxClients 100',
      ...allow.map((a) => `Allow ${a}`),
      ...connectPorts.map((p) => `ConnectPort ${p}`),
      ...(basicAuth ? [`BasicAuth ${basicAuth.user} ${basicAuth.password}`] : []),
      '',
    ].join('\n');
    const file = join(this.dir, 'tinyproxy.conf');
    writeFileSync(file, conf, { mode: 0o600 });
    this.proc = new CliProcess(['-d', '-c', file], {}, ['tinyproxy']);
    await this.proc.waitForLine((l) => l.includes('Accepting connections'), 15_000);
    return this;
  }

  /** Log lines so far (a mark for `connectsSince`). */
  get lineCount(): number {
    return this.proc?.lines.length ?? 0;
  }

  /** The CONNECT targets (`host:port`) tinyproxy logged since line `mark`. */
  connectsSince(mark = 0): string[] {
    const out: string[] = [];
    for (const l of this.proc?.lines.slice(mark) ?? []) {
      const m = /Request \(file descriptor \d+\): CONNECT (\S+) HTTP/.exec(l);
      if (m) out.push(m[1]!);
    }
    return out;
  }

  /** The client addresses tinyproxy logged connections from since line `mark`. */
  clientsSince(mark = 0): string[] {
    const out: string[] = [];
    for (const l of this.proc?.lines.slice(mark) ?? []) {
      const m = /: Connect \(file descriptor \d+\): (\S+)/.exec(l);
      if (m) out.push(m[1]!);
    }
    return out;
  }

  /** Idempotent. */
  async stop(): Promise<void> {
    await this.proc?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
