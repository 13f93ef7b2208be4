import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A stand-in for systemd's NOTIFY_SOCKET: a unix datagram socket (Node cannot bind one, so a tiny
 * python3 process does) that prints each message as one JSON line, with the sender's PID from the
 * kernel (SO_PASSCRED), which is how systemd tells whose message it is (systemd-notify run as root
 * gives its parent's). Like systemd it closes the fds a message carries, which releases
 * systemd-notify's barrier, and it counts those barriers. The path may start with '@' for an
 * abstract socket.
 */
const LISTENER = String.raw`
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind("\0" + sys.argv[1][1:] if sys.argv[1].startswith("@") else sys.argv[1])
print(json.dumps({"listening": True}), flush=True)
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(16 * 4) + socket.CMSG_SPACE(12))
    pid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for i in range(0, len(data) - len(data) % 4, 4):
                os.close(int.from_bytes(data[i:i + 4], sys.byteorder))
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
    fields = dict(l.split("=", 1) for l in msg.decode().split("\n") if "=" in l)
    if fields == {"BARRIER": "1"}:
        # systemd-notify waiting for the message before it to be taken (fd closed above)
        print(json.dumps({"barrier": True}), flush=True)
        continue
    print(json.dumps({"fields": fields, "pid": pid}), flush=True)
`;

export interface NotifyMessage {
  /** Arrival time (performance.now() of the test process). */
  at: number;
  fields: Record<string, string>;
  /** The sending process, as the kernel gives it (SCM_CREDENTIALS). */
  pid: number | null;
}

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

export class NotifyListener {
  readonly dir = mkdtempSync(join(tmpdir(), 'devstreams-notify-'));
  /** NOTIFY_SOCKET: a file in `dir`, or with `abstract`, an abstract socket's '@name'. */
  readonly path: string;

  constructor(opts: { abstract?: boolean } = {}) {
    this.path = opts.abstract ? `@devstreams-notify-${process.pid}-${Math.random().toString(36).slice(2)}` : join(this.dir, 'notify');
  }
  readonly messages: NotifyMessage[] = [];
  /** systemd-notify's BARRIER=1 messages seen (not in `messages`): none when a process sends itself. */
  barriers = 0;
  private child: ChildProcess | undefined;
  private waiters: Array<() => void> = [];

  async start(): Promise<this> {
    this.child = spawn(PYTHON, ['-c', LISTENER, this.path], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    let onListening: () => void = () => {};
    const listening = new Promise<void>((r) => (onListening = r));
    this.child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, i)) as { listening?: boolean; barrier?: boolean; fields?: Record<string, string>; pid?: number | null };
        buf = buf.slice(i + 1);
        if (line.listening) onListening();
        if (line.barrier) this.barriers++;
        if (line.fields) {
          this.messages.push({ at: performance.now(), fields: line.fields, pid: line.pid ?? null });
          for (const w of this.waiters.splice(0)) w();
        }
      }
    });
    const exited = once(this.child, 'exit').then(() => 'exited' as const);
    if ((await Promise.race([listening, exited])) === 'exited') throw new Error('the notify listener (python3) exited');
    return this;
  }

  /** Messages that carry `key` (with `value`, if given). */
  with(key: string, value?: string): NotifyMessage[] {
    return this.messages.filter((m) => key in m.fields && (value === undefined || m.fields[key] === value));
  }

  /** Resolves with the first message (past or future) matching `pred`; rejects after `timeoutMs`. */
  async waitFor(pred: (m: NotifyMessage) => boolean, what: string, timeoutMs = 15_000, from = 0): Promise<NotifyMessage> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(from).find(pred);
      if (found) return found;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no notify message ${what}; got ${JSON.stringify(this.messages.map((m) => m.fields))}`);
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((r) => {
        this.waiters.push(r);
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
    }
  }

  async stop(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await once(this.child, 'exit');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
