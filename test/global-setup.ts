import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * One temporary directory for the whole run. The test files and the processes they start with the
 * environment passed on (sshd, the agent, the hub, openssl) inherit it as TMPDIR, so the throwaway
 * CAs, keys, configs and sshd folders they make with `mkdtemp(tmpdir())` land here, and the run
 * removes them all when it ends, passed or failed. A child started with an environment of its own
 * making does not see it: `.ci/run` fails if anything of ours is left in the real TMPDIR.
 */
export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-test-run-'));
  process.env.TMPDIR = dir;
  return () => {
    const left = readdirSync(dir).length;
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    process.stdout.write(`test run: removed ${dir} (${left} entries)\n`);
  };
}
