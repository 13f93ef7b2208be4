import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CLI, CliProcess } from '../helpers/proc.js';
import { haveSshd, startSshd, type Sshd } from '../helpers/sshd.js';
import { Stack } from '../helpers/stack.js';
import { CANNOT_RUN, canBuild, command, ensureBinaries, MISSING_BUILD_TOOLS, NODE_VERSION, PKG_VERSION, run, runnerFor, type Arch } from './binaries.js';

/**
 * One single executable, run for real: natively, or under qemu-aarch64-static for arm64 on an x64
 * host. The hub is this checkout's (dist/devstreams.mjs on the host's Node); the agent is the
 * executable. Under qemu everything is slow (seconds to start), hence the long bounds.
 */

const MB20 = 20 * 1024 * 1024;
const SLOW = 240_000;

export function executableSuite(arch: Arch, opts: { serviceSide: 'checkout' | 'executable' }): void {
  const runner = runnerFor(arch);
  const skip = !runner || !canBuild;
  if (skip) console.warn(`test/packaging: ${arch} executable tests skipped: ${!canBuild ? `missing: ${MISSING_BUILD_TOOLS.join(', ')}` : CANNOT_RUN}`);

  describe.skipIf(skip)(`the ${arch} single executable${runner?.length ? ' under qemu' : ''}`, () => {
    let exe: string[];
    const tmp = mkdtempSync(join(tmpdir(), `devstreams-exe-${arch}-`));

    beforeAll(async () => {
      await ensureBinaries();
      exe = command(arch);
    }, 10 * 60_000);
    afterAll(() => rmSync(tmp, { recursive: true, force: true }));

    it('--version prints the package version and the Node version inside, and nothing else', async () => {
      const r = await run([...exe, '--version']);
      expect({ code: r.code, stdout: r.stdout.toString(), stderr: r.stderr }).toEqual({
        code: 0,
        stdout: `devstreams ${PKG_VERSION} (node v${NODE_VERSION})\n`,
        stderr: '',
      });
    }, SLOW);

    it('a bad agent config: one line naming the file and the field, exit 2', async () => {
      const file = join(tmp, 'bad.yaml');
      writeFileSync(file, 'hub:\n  url: wss://localhost/mqtt\n  deviceId: pi-1\n  key: abcdefghijklmnopqrstuvwxyz\nallow:\n  - { name: ssh, port: 70000 }\n');
      const r = await run([...exe, 'agent', '--config', file]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^devstreams: ${file}: allow\\.0\\.port: [^\\n]+\\n$`));
      expect(r.stdout.length).toBe(0);
    }, SLOW);

    // The executable's agent compiles its YAML parser for each read of its config (scripts/sea-shims/
    // yaml-on-demand.cjs): a YAML error is reported as in the program from the checkout.
    it('an agent config that is not YAML: one line naming the file and the line, exit 2', async () => {
      const file = join(tmp, 'not-yaml.yaml');
      writeFileSync(file, 'hub:\n  url: wss://localhost/mqtt\nallow: [unclosed\n');
      const r = await run([...exe, 'agent', '--config', file]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^devstreams: ${file}: line \\d+: [^\\n]+\\n$`));
    }, SLOW);

    describe.skipIf(!haveSshd)('a whole stream: agent = the executable, ssh through it', () => {
      const stack = new Stack();
      let sshd: Sshd;
      let agent: CliProcess;
      const id = `pi-${arch}`;
      // Preloaded into the agent: on SIGUSR2, a JSON line with the built-in modules it has loaded.
      const preload = join(tmp, 'modules.cjs');
      // ProxyCommand: the service side from this checkout, or the executable's own `connect`.
      /** The agent's first line from `from` on (an index into its lines) that contains `text`. */
      const lineAfter = (from: number, text: string): Promise<string> =>
        agent.waitForLine((l) => agent.lines.lastIndexOf(l) >= from && l.includes(text), SLOW);
      const connect = (): string => (opts.serviceSide === 'executable' ? exe.join(' ') : `${process.execPath} ${CLI}`) + ' connect %h ssh';
      const ssh = (remote: string, input: Buffer | string, timeoutMs: number) =>
        run(['ssh', ...sshd.sshArgs(id), '-o', `ProxyCommand=${connect()}`, `${sshd.user}@${id}`, remote], { input, env: stack.env, timeoutMs });

      beforeAll(async () => {
        await ensureBinaries();
        sshd = await startSshd();
        await stack.start([{ id, allow: [`ssh=${sshd.port}`, 'echo'], start: false }]);
        writeFileSync(preload, "process.on('SIGUSR2', () => console.log(JSON.stringify({ msg: 'modules loaded', modules: process.moduleLoadList })));\n");
        // DEBUG=*: the executable's debug is off (scripts/sea-shims/debug.cjs), so no trace, and no
        // MQTT password in one, reaches the output (checked by the first test below).
        agent = new CliProcess(['agent', '--config', stack.agentConfig(id)], { NODE_OPTIONS: `--require ${preload}`, DEBUG: '*' }, command(arch));
        stack.agents.set(id, agent);
        await agent.waitForLog('agent connected', {}, SLOW);
        await stack.waitForDevice(id, true, 60_000);
      }, 10 * 60_000);
      afterAll(async () => {
        await stack.stop();
        await sshd?.stop();
      });

      it('the agent starts without warnings (no native addon, no optional-module messages), and DEBUG=* prints no trace', () => {
        const notJson = agent.lines.filter((l) => !l.startsWith('{'));
        expect(notJson).toEqual([]);
        expect(agent.lines.join('\n')).not.toMatch(/warn|bufferutil|utf-8-validate|ExperimentalWarning/i);
      });

      it('is named devstreams in ps and top, not "MainThread" (protocol/process-name.ts), its command line whole', () => {
        expect(readFileSync(`/proc/${agent.child.pid}/comm`, 'utf8').trim()).toBe('devstreams');
        expect(readFileSync(`/proc/${agent.child.pid}/cmdline`, 'utf8').split('\0')).toContain(stack.agentConfig(id));
      });

      // scripts/build-binary.mjs REPLACED and the lazy loads in protocol/sd-notify.ts and
      // agent/status-probes.ts: built-ins a fresh agent does not use, each of which its RSS carried
      // (perf_hooks: lru-cache, for mqtt.js's MQTT 5 topic aliases, read the global `performance`;
      // tty: debug's colours; internal/navigator: mqtt.js's browser checks read the global `navigator`).
      // Before any stream (streams load more).
      it('a fresh agent has not loaded built-ins it does not use', async () => {
        agent.child.kill('SIGUSR2');
        const modules = new Set((await agent.waitForLog('modules loaded', {}, SLOW)).modules as string[]);
        expect(modules.has('NativeModule tls'), 'tls, as a check that the list is whole').toBe(true);
        const unused = ['assert', 'worker_threads', 'child_process', 'fs/promises', 'internal/readline/interface', 'zlib', 'perf_hooks', 'tty', 'internal/navigator'];
        expect(unused.filter((m) => modules.has(`NativeModule ${m}`))).toEqual([]);
        // protocol/compiler-tiers.ts: no optimizing compiler before the first stream.
        expect(agent.logs('first stream: Maglev compiler on')).toEqual([]);
      }, SLOW);

      it('runs a command over ssh through the stream (the first stream turns Maglev on)', async () => {
        const r = await ssh('echo hello-from-$(uname -s)', '', SLOW);
        expect({ code: r.code, stdout: r.stdout.toString() }).toEqual({ code: 0, stdout: 'hello-from-Linux\n' });
        expect(agent.logs('first stream: Maglev compiler on')).toHaveLength(1);
      }, SLOW);

      // `connect ... | head -c 20`: connect ends quietly, and its close frame leaves before it exits,
      // so the hub records why (write EPIPE) rather than a connection gone without one (1006).
      it('connect whose reader goes away ends quietly, and the hub learns why', async () => {
        const service = opts.serviceSide === 'executable' ? exe.join(' ') : `${process.execPath} ${CLI}`;
        const cmd = `head -c 4000000 /dev/zero | ${service} connect ${id} echo | head -c 20 > /dev/null; echo "rc=\${PIPESTATUS[1]}"`;
        const r = await run(['bash', '-c', cmd], { env: stack.env, timeoutMs: SLOW });
        expect(r.stderr.toString()).toBe('');
        expect(r.stdout.toString()).toBe('rc=1\n');
        const client = stack.client();
        try {
          const last = await vi.waitFor(async () => {
            const [rec] = await client.listStreams({ device: id, limit: 1 });
            expect(rec?.service).toBe('echo');
            return rec!;
          });
          expect(last).toMatchObject({ result: 'error', code: 'PEER_GONE', reason: 'write EPIPE', closedBy: 'service' });
        } finally {
          client.close();
        }
      }, SLOW);

      it('carries 20 MB each way in one ssh session, checked by SHA-256', async () => {
        const up = randomBytes(MB20);
        const down = join(tmp, 'down.bin');
        const downBytes = randomBytes(MB20);
        writeFileSync(down, downBytes);
        // Upload: the device hashes what arrived; download: the device sends a file back.
        const r = await ssh(`sha256sum >&2; cat ${down}`, up, SLOW);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr.split(' ')[0]).toBe(sha256(up));
        expect(r.stdout.length).toBe(MB20);
        expect(sha256(r.stdout)).toBe(sha256(downBytes));
        expect(agent.logs('first stream: Maglev compiler on')).toHaveLength(1); // once, not per stream
      }, SLOW);

      // protocol/idle-memory.ts, protocol/malloc-trim.ts: the executable carries the native helper
      // for its architecture, writes it out, loads it, sets glibc's thresholds while busy (throughput
      // mode), and trims glibc's heap once idle.
      it("idle after the transfers, it gives glibc's free heap back with the executable's own native helper", async () => {
        const line = await lineAfter(agent.lines.length, '"msg":"idle: memory given back"');
        const given = JSON.parse(line) as Record<string, unknown>;
        expect(agent.logs('glibc heap not tuned or trimmed (native helper unavailable)')).toEqual([]);
        expect(given.trimmed).toBe(true);
        // In throughput mode the helper also set glibc's heap thresholds while the streams were open.
        const mode = agent.logs('garbage collection mode')[0]?.gc;
        const thresholds = agent.logs("busy: glibc's heap thresholds").map((l) => l.set);
        expect(thresholds).toEqual(mode === 'throughput' ? [true] : []);
        // qemu-user reports no RSS (process.memoryUsage.rss() is 0 under it).
        if (!runner?.length) expect(given.rssAfter).toBeLessThan(given.rssBefore as number);
      }, SLOW);

      it('re-reads its config on SIGHUP, and refuses a file that is not YAML with its line', async () => {
        const file = stack.agentConfig(id);
        const good = readFileSync(file, 'utf8');
        let from = agent.lines.length;
        agent.child.kill('SIGHUP');
        await lineAfter(from, '"msg":"config reloaded (allowlist, limits, key)"');
        try {
          writeFileSync(file, `${good}\nzzz: [unclosed\n`);
          from = agent.lines.length;
          agent.child.kill('SIGHUP');
          const refused = JSON.parse(await lineAfter(from, '"msg":"config reload refused, the running config stays"')) as { err: string };
          expect(refused.err).toMatch(/: line \d+: /);
        } finally {
          writeFileSync(file, good);
        }
        expect(agent.child.exitCode).toBe(null);
      }, SLOW);
    });
  });
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
