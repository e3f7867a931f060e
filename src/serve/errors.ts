/**
 * The server's errors: every failure a client sees is one JSON object {"error": {"code", "message", "param"}} with
 * an HTTP status (400 malformed, 401 no or wrong token, 404 no such model or route, 413 too large, 422 valid JSON
 * that the model cannot do, 429 over a limit, with Retry-After, 503 draining or timed out). Messages name the
 * request's fields (`steps`), never the CLI's flags.
 */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    opts: { cause?: unknown; retryAfter?: number } = {},
  ) {
    super(message, { cause: opts.cause });
    this.retryAfter = opts.retryAfter;
  }

  /** seconds, sent as Retry-After (429, 503) */
  readonly retryAfter: number | undefined;

  toJSON(): { error: { code: string; message: string; param: string | null } } {
    return { error: { code: this.code, message: this.message, param: this.param } };
  }
}

/** A library message written for the CLI (`--steps must be ...`) in the API's words (`steps must be ...`). */
export function apiWords(message: string): string {
  return message.replace(/--([a-z][a-z-]*)/g, (_, flag: string) => flag.replace(/-/g, '_'));
}
