import { z } from 'zod';

/** Every error code Hookpost answers with. Stable: clients may switch on them. */
export const ErrorCode = z.enum([
  'validation_failed',
  'malformed_json',
  'payload_too_large',
  'unsupported_media_type',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'method_not_allowed',
  'rate_limited',
  'internal_error',
  /** The database could not be reached or dropped the session: nothing was accepted; retry (Retry-After). */
  'unavailable',
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

export const ErrorIssue = z.object({
  /** Where the problem is: `body.hook_url`, `query.limit`, `path.id`, `header.authorization`. */
  field: z.string(),
  message: z.string(),
});
export type ErrorIssue = z.infer<typeof ErrorIssue>;

/** The one error envelope, for every 4xx and 5xx. */
export const ErrorEnvelope = z.object({
  error: z.object({
    code: ErrorCode,
    message: z.string(),
    /** The first offending field, when the error is about one. */
    field: z.string().optional(),
    issues: z.array(ErrorIssue).optional(),
    request_id: z.string().optional(),
  }),
});
export type ErrorEnvelope = z.infer<typeof ErrorEnvelope>;

export const HTTP_STATUS_FOR: Record<ErrorCode, number> = {
  validation_failed: 400,
  malformed_json: 400,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  method_not_allowed: 405,
  rate_limited: 429,
  internal_error: 500,
  unavailable: 503,
};
