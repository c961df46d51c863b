import { HTTP_STATUS_FOR, type ErrorCode, type ErrorEnvelope, type ErrorIssue } from '@hookpost/contract';
import type { ZodError } from 'zod';

/** An error meant for the client: a code from the contract, a message, the field at fault. */
export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
    readonly issues?: ErrorIssue[],
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = HTTP_STATUS_FOR[code];
  }

  static notFound(what: string): ApiError {
    return new ApiError('not_found', `${what} not found`);
  }

  /** A 400 about one field of the request body. */
  static invalidField(field: string, message: string): ApiError {
    const path = `body.${field}`;
    return new ApiError('validation_failed', `${path}: ${message}`, path, [{ field: path, message }]);
  }

  /** Headers the answer carries: when to retry a 503. */
  headers(): Record<string, string> {
    return this.code === 'unavailable' ? { 'retry-after': '1' } : {};
  }

  toEnvelope(requestId?: string): ErrorEnvelope {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.field ? { field: this.field } : {}),
        ...(this.issues ? { issues: this.issues } : {}),
        ...(requestId ? { request_id: requestId } : {}),
      },
    };
  }
}

/** zod issues of one request part (`path`, `query`, `header`, `body`) as envelope issues. */
export function zodIssues(part: string, error: ZodError): ErrorIssue[] {
  return error.issues.map((i) => ({
    field: [part, ...i.path.map(String)].join('.'),
    message: i.message,
  }));
}

/** A 400 listing every issue, led by the first. */
export function validationError(issues: ErrorIssue[]): ApiError {
  const first = issues[0] ?? { field: 'request', message: 'invalid request' };
  return new ApiError('validation_failed', `${first.field}: ${first.message}`, first.field, issues);
}

/**
 * An answer decided below the HTTP layer (the ingestor's 400s and 409s, shared by a group of
 * requests) with this request's id in its error envelope, as every other error has.
 */
export function withRequestId<T>(body: T, requestId: unknown): T {
  const envelope = body as { error?: { request_id?: unknown } } | null;
  if (requestId === undefined || !envelope || typeof envelope.error !== 'object' || envelope.error === null || envelope.error.request_id !== undefined) return body;
  return { ...envelope, error: { ...envelope.error, request_id: String(requestId) } } as T;
}
