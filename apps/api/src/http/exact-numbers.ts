/**
 * Event data with its numbers as sent. The routes validate the body as JSON.parse reads it,
 * which changes integers beyond 2^53 and decimals with more than 15 significant digits; the
 * events' `data` is then taken from the same text read with @hookpost/contract's parseExact,
 * which keeps those numbers for the ingest to store exactly (jsonb holds them as sent).
 * Only `data` is taken: the other fields stay as validated (a number where a string belongs
 * is refused as before, not turned into its placeholder string).
 */
import { mayHoldInexactNumbers, parseExact, type EventIn } from '@hookpost/contract';

/** `events` (as validated from `text`) with each one's `data` read exactly from `text`. */
export function withExactData(text: string | undefined, events: EventIn[], single: boolean): EventIn[] {
  if (text === undefined || !mayHoldInexactNumbers(text)) return events;
  const exact = parseExact(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text) as EventIn | { events: EventIn[] };
  const exactEvents = single ? [exact as EventIn] : (exact as { events: EventIn[] }).events;
  return events.map((e, i) => ({ ...e, data: (exactEvents[i] as EventIn).data }));
}
