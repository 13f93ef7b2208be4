/**
 * What a stream leg is to the code that carries it (WsDuplex on the agent and in the SDK, the hub's
 * relay): the part of `ws`'s WebSocket they use. A per-stream WebSocket is one; a channel of a
 * multiplexed connection (protocol/mux-channel.ts) is another, with the same semantics: ordered
 * binary and text messages, pause and resume, a send callback once the bytes are written, a close
 * with a code and reason that the peer answers, and 'close' once both are done.
 */
export interface MessageSocket {
  readonly readyState: number;
  readonly CONNECTING: 0;
  readonly OPEN: 1;
  readonly CLOSING: 2;
  readonly CLOSED: 3;
  /** Bytes given to send() and not yet written out. */
  readonly bufferedAmount: number;
  readonly isPaused: boolean;
  binaryType: string;
  send(data: Buffer | string, options: { binary: boolean }, cb?: (err?: Error) => void): void;
  pause(): void;
  resume(): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this;
  on(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  once(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  off(event: string, listener: (...args: any[]) => void): this;
}
