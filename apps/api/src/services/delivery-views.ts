import type { Attempt, Delivery } from '@hookpost/contract';
import type { DeliveryAttemptRow, DeliveryRow } from '@hookpost/db';

const iso = (d: Date) => d.toISOString();

export function toDelivery(d: DeliveryRow): Delivery {
  return {
    id: d.id,
    webhook_id: d.webhook_id,
    ...(d.event_id ? { event_id: d.event_id } : {}),
    kind: d.kind,
    status: d.status,
    attempts: d.attempts,
    ...(d.status === 'pending' ? { next_attempt_at: iso(d.next_attempt_at) } : {}),
    ...(d.last_status_code !== null ? { last_status_code: d.last_status_code } : {}),
    ...(d.last_error !== null ? { last_error: d.last_error } : {}),
    ...(d.replay_of ? { replay_of: d.replay_of } : {}),
    created_at: iso(d.created_at),
    updated_at: iso(d.updated_at),
    ...(d.finished_at ? { finished_at: iso(d.finished_at) } : {}),
  };
}

export function toAttempt(a: DeliveryAttemptRow): Attempt {
  return {
    id: Number(a.id),
    delivery_id: a.delivery_id,
    attempt: a.attempt,
    started_at: iso(a.started_at),
    duration_ms: a.duration_ms,
    ...(a.status_code !== null ? { status_code: a.status_code } : {}),
    outcome: a.outcome,
    ...(a.error !== null ? { error: a.error } : {}),
    ...(a.response_snippet !== null ? { response_snippet: a.response_snippet } : {}),
    request_headers: a.request_headers,
  };
}
