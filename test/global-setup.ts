import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * One temporary directory for the whole run. The test files and every process they start (sshd,
 * the agent, the hub, openssl) inherit it as TMPDIR, so the throwaway CAs, keys, configs and sshd
 * folders they make with `mkdtemp(tmpdir())` land here, and the run removes them all when it ends,
 * passed or failed. Nothing a test makes is left in /tmp: `.ci/run` checks that.
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
