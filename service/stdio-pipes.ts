import { loadMallocTrim, type MallocTrimLoad } from '../protocol/index.js';

/**
 * The capacity `devstreams connect` asks for the pipes ssh gives it (its ProxyCommand's standard
 * input and output): 1 MiB, Linux's limit for an unprivileged process (/proc/sys/fs/pipe-max-size),
 * where a pipe holds 64 KiB unless told otherwise. With 64 KiB, a read of standard input took at most
 * that, so an upload went out in DATA frames of 64 KiB, a quarter of what `devstreams forward` sends
 * from a TCP socket (protocol/tcp-read-buffer.ts TCP_READ_BYTES), and the hub and the agent paid their
 * cost per message four times as often; and each frame written to standard output was split into
 * pieces of what ssh had room for. The kernel takes the pages as the bytes come, not up front.
 */
export const STDIO_PIPE_BYTES = 1024 * 1024;

/** What widenPipes did for each descriptor: the capacity set, or why not (the errno's negative, or the helper's absence). */
export type PipeWidening = Record<number, number | string>;

/**
 * Sets the capacity of each of `fds` that is a pipe to STDIO_PIPE_BYTES, through the native helper
 * (protocol/malloc-trim.ts: Node has no fcntl). Anything that is not a pipe (a terminal, a file, a
 * socket) is left as it is, as is everything where the helper cannot load.
 */
export function widenPipes(fds: readonly number[] = [0, 1], load: () => MallocTrimLoad = loadMallocTrim): PipeWidening {
  const helper = load();
  const done: PipeWidening = {};
  for (const fd of fds) done[fd] = helper.pipeSize ? helper.pipeSize(fd, STDIO_PIPE_BYTES) : helper.reason;
  return done;
}
