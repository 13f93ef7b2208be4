import { loadMallocTrim } from './malloc-trim.js';

/** What ps, top, pgrep and killall show for the hub, the agent and `devstreams forward`. */
export const PROCESS_NAME = 'devstreams';

/**
 * Names the process `devstreams` (/proc/PID/comm): the hub, the agent, forward and connect. Node
 * 24, which the executables carry, names its main thread "MainThread", and that is what ps, top and
 * `ss -p` showed for every devstreams daemon: `pgrep -x devstreams` found none. Through the native
 * helper's prctl(PR_SET_NAME) (native/malloc-trim.c), not process.title, which would also overwrite
 * the command line (`ps -f` would lose `agent --config /etc/devstreams/agent.yaml`). Returns null
 * when named, else why not (no helper here: the name stays Node's).
 */
export function nameProcess(load = loadMallocTrim): string | null {
  const helper = load();
  if (!helper.threadName) return helper.reason;
  const err = helper.threadName(PROCESS_NAME);
  return err === 0 ? null : `prctl PR_SET_NAME: errno ${err}`;
}
