import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A stand-in for systemd's NOTIFY_SOCKET: a unix datagram socket (Node cannot bind one, so a tiny
 * python3 process does) that prints each message as one JSON line. Like systemd it closes the fds a
 * message carries, which releases systemd-notify's barrier.
 */
const LISTENER = String.raw`
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps({"listening": True}), flush=True)
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for i in range(0, len(data) - len(data) % 4, 4):
                os.close(int.from_bytes(data[i:i + 4], sys.byteorder))
    fields = dict(l.split("=", 1) for l in msg.decode().split("\n") if "=" in l)
    if fields == {"BARRIER": "1"}:
        continue  # systemd-notify waiting for the message before it to be taken (fd closed above)
    print(json.dumps({"fields": fields}), flush=True)
`;

export interface NotifyMessage {
  /** Arrival time (performance.now() of the test process). */
  at: number;
  fields: Record<string, string>;
}

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

export class NotifyListener {
  readonly dir = mkdtempSync(join(tmpdir(), 'devstreams-notify-'));
  readonly path = join(this.dir, 'notify');
  readonly messages: NotifyMessage[] = [];
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
        const line = JSON.parse(buf.slice(0, i)) as { listening?: boolean; fields?: Record<string, string> };
        buf = buf.slice(i + 1);
        if (line.listening) onListening();
        if (line.fields) {
          this.messages.push({ at: performance.now(), fields: line.fields });
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
