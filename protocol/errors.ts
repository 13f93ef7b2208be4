/**
 * Every refusal in devstreams has a code. Each code maps to one HTTP status (REST API, relay upgrade,
 * device answers) and one WebSocket close code (an open stream that ends abnormally). Callers compare
 * codes, never messages.
 *
 * Close codes are unique, so the code survives a close: 4000 + the HTTP status for one code of each
 * status, 49xx for the others that share it (FORBIDDEN, SERVICE_UNKNOWN, NOT_FOUND, DEVICE_OFFLINE;
 * none of those ever closes an open stream today), and the standard 1001/1009/1011 where they fit.
 */
export const ERRORS = {
  BAD_REQUEST: { http: 400, ws: 4400 },
  UNAUTHORIZED: { http: 401, ws: 4401 },
  SERVICE_DENIED: { http: 403, ws: 4403 },
  /** The service token's scope does not cover that device or service (checked before the device is asked). */
  FORBIDDEN: { http: 403, ws: 4903 },
  DEVICE_UNKNOWN: { http: 404, ws: 4404 },
  SERVICE_UNKNOWN: { http: 404, ws: 4904 },
  NOT_FOUND: { http: 404, ws: 4914 },
  STREAM_EXPIRED: { http: 410, ws: 4410 },
  TOKEN_USED: { http: 409, ws: 4409 },
  PAYLOAD_TOO_LARGE: { http: 413, ws: 1009 },
  VERSION_MISMATCH: { http: 426, ws: 4426 },
  LIMIT_EXCEEDED: { http: 429, ws: 4429 },
  INTERNAL: { http: 500, ws: 1011 },
  DEVICE_OFFLINE: { http: 503, ws: 4913 },
  TARGET_UNREACHABLE: { http: 503, ws: 4503 },
  PEER_GONE: { http: 502, ws: 4502 },
  DEVICE_TIMEOUT: { http: 504, ws: 4504 },
  SHUTTING_DOWN: { http: 503, ws: 1001 },
} as const satisfies Record<string, { http: number; ws: number }>;

export type ErrorCode = keyof typeof ERRORS;
export const ERROR_CODES = Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]];

/** The statuses a device may answer a stream request with (DESIGN: stream lifecycle, step 3). */
export const DEVICE_STATUSES = [200, 400, 403, 404, 429, 503] as const;
export type DeviceStatus = (typeof DEVICE_STATUSES)[number];

export function httpStatusOf(code: ErrorCode): number {
  return ERRORS[code].http;
}

export function wsCloseCodeOf(code: ErrorCode): number {
  return ERRORS[code].ws;
}

/** An error that carries a protocol code and a reason a person can read. Never put secrets in reason. */
export class DevstreamsError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, reason: string, status?: number) {
    super(reason);
    this.name = 'DevstreamsError';
    this.code = code;
    this.status = status ?? ERRORS[code].http;
  }
  get reason(): string {
    return this.message;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}
