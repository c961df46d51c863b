import { z } from 'zod';

export const Uuid = z.string().uuid('must be a UUID');

/** An absolute http(s) URL, at most 2048 characters. */
export const HttpUrl = z
  .string()
  .max(2048, 'must be at most 2048 characters')
  .url('must be an absolute URL')
  .refine((v) => /^https?:\/\//i.test(v), 'must use http or https');

/**
 * ISO-8601 date-time, as every Hookpost response writes it (UTC, milliseconds, `Z`). One that
 * names no instant (an offset of `+25:00`, which the format allows) is refused: read, it was
 * an Invalid Date that reached Postgres (a 500).
 */
export const IsoDateTime = z
  .string()
  .datetime({ offset: true })
  .refine((v) => !Number.isNaN(Date.parse(v)), 'must be a real date-time (its offset within ±23:59)');

/**
 * A number in a query string: digits, with a decimal part or not, no blanks (`0x10`, `1e1`,
 * ` 1` are not numbers). `100.0` is 100: unified.to's Python SDK types `limit` and `offset` as
 * floats and sends them so (before, every paged list call of it was a 400).
 */
export const queryNumber = (schema: z.ZodNumber = z.number()) =>
  z.preprocess((v) => (typeof v === 'string' && /^[0-9]+(\.[0-9]+)?$/.test(v) ? Number(v) : v), schema);

/** The offset of the unified face's lists: at most 10^9 (a bigint in Postgres; past its range a 500). */
export const pageOffset = queryNumber(
  z.number({ invalid_type_error: 'must be a number' }).int('must be an integer').min(0, 'must be at least 0').max(1e9, 'must be at most 1000000000'),
);

/** `true`/`false` (also `1`/`0`) in a query string. */
export const queryBoolean = z.preprocess(
  (v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v),
  z.boolean({ invalid_type_error: 'must be true or false' }),
);

/**
 * A date (`2026-12-01`, midnight UTC) or a date-time (`…T10:00:00Z`, `…+02:00`) in a query
 * string, parsed to a Date. A date-time without an offset is UTC, as a date is (Python's
 * `datetime.utcnow().isoformat()` writes one so; before, a 400), never the server's time
 * zone, in which the same request would mean different instants on different servers.
 * Numbers and other forms Date.parse would take are refused.
 */
export const queryDate = z
  .string()
  .transform((v) => (LOCAL_DATE_TIME.test(v) ? `${v}Z` : v))
  .refine((v) => ISO_DATE.test(v) || IsoDateTime.safeParse(v).success, 'must be an ISO-8601 date (2026-12-01) or date-time (2026-12-01T10:00:00Z; no offset: UTC)')
  .refine((v) => isCalendarDay(v.slice(0, 10)), 'must be a real date')
  .transform((v) => new Date(v));
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
const LOCAL_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/;
/** `2026-02-30` is not one (Date would read it as March 2nd). */
const isCalendarDay = (day: string) => {
  const d = new Date(`${day}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === day;
};

/** Pagination limits shared by the list endpoints. */
export const MAX_PAGE_SIZE = 100;
export const DEFAULT_PAGE_SIZE = 100;
/**
 * A page size, capped at MAX_PAGE_SIZE: a larger one gets a full page, as unified.to's lists
 * cap theirs (a client asking for `limit: 1000` to read everything gets pages of 100, not a 400).
 */
export const pageLimit = queryNumber(
  z
    .number({ invalid_type_error: 'must be a number' })
    .int('must be an integer')
    .min(1, 'must be at least 1')
    .describe(`at most ${MAX_PAGE_SIZE} are returned; a larger limit is taken as ${MAX_PAGE_SIZE}`),
).transform((n) => Math.min(n, MAX_PAGE_SIZE));

export const IdParams = z.object({ id: Uuid });

/** Bodies whose fields are all optional still must be JSON objects. */
export const EmptyBody = z.object({}).passthrough().optional();
