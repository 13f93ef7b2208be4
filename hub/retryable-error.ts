import { DevstreamsError, type ErrorCode } from '../protocol/index.js';

/**
 * A refusal that says when to try again: its answer carries `Retry-After: <retryAfterSec>`
 * (hub/http-util.ts). The hub's stream limits throw them (hub/stream-limits.ts).
 */
export class RetryableError extends DevstreamsError {
  readonly retryAfterSec: number;
  constructor(code: ErrorCode, reason: string, retryAfterSec: number) {
    super(code, reason);
    this.name = 'RetryableError';
    this.retryAfterSec = retryAfterSec;
  }
}
