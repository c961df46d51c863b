import type { ConnectionAuth } from '@hookpost/contract';
import { polling, type ClaimedConnection } from '@hookpost/db';
import { sourceSettings } from '@hookpost/sources';
import type { PollContext } from './context.js';
import { RequestGate } from './schedule.js';
import { runStream } from './stream-run.js';

/** How long a paused (or source-less) connection is left alone (updating it makes it due at once). */
const PAUSED_CONNECTION_MS = 24 * 3600_000;

/**
 * One claimed connection: its due streams one after another (one poll at a time per
 * connection), requests spaced to the connection's rate, the lease renewed before
 * every request and checked by every write. A 429 or refused credentials stop the connection until the source's
 * Retry-After (or the auth back-off, or an update of the connection).
 */
export async function runConnection(ctx: PollContext, claim: ClaimedConnection): Promise<void> {
  const { db, workerId, settings: cfg } = ctx;
  const gate = new RequestGate(cfg.connectionRps, claim.last_request_at);
  let notBefore: Date | undefined;
  let release = true;
  ctx.stats.connections += 1;
  try {
    const connection = await polling.connectionSource(db, claim.connection_id);
    if (!connection) return; // deleted: its poll row went with it
    if (connection.is_paused) {
      notBefore = new Date(Date.now() + PAUSED_CONNECTION_MS);
      return;
    }
    const adapter = ctx.adapters.get(connection.source_adapter);
    if (!adapter) {
      ctx.logger.error({ connection: connection.id, adapter: connection.source_adapter }, 'unknown source adapter');
      notBefore = new Date(Date.now() + cfg.authRetryMs);
      return;
    }
    const auth = connection.auth_encrypted ? (JSON.parse(ctx.box.open(connection.auth_encrypted)) as ConnectionAuth) : null;
    const settings = sourceSettings(auth);
    if (!settings.apiUrl) {
      // Not a source (e.g. a connection whose events the host product publishes): nothing to
      // poll and nothing wrong. Updating its auth makes it due again.
      notBefore = new Date(Date.now() + PAUSED_CONNECTION_MS);
      return;
    }
    for (const stream of await polling.dueStreams(db, connection.id)) {
      if (ctx.signal.aborted) break;
      const outcome = await runStream(ctx, {
        connection,
        adapter,
        settings,
        stream,
        gate,
        renewLease: (q = db) => polling.renewLease(q, connection.id, workerId, cfg.leaseMs),
      });
      if (outcome.kind === 'throttled') {
        notBefore = new Date(Date.now() + outcome.retryAfterMs);
        break;
      }
      if (outcome.kind === 'auth-refused') {
        notBefore = new Date(Date.now() + cfg.authRetryMs);
        break;
      }
      if (outcome.kind === 'lease-lost') {
        release = false;
        break;
      }
      // A completed run leaves the connection healthy for the next stream.
      if (outcome.kind === 'completed') connection.is_healthy = true;
    }
  } finally {
    if (release) await polling.releaseConnection(db, claim.connection_id, workerId, { lastRequestAt: gate.lastRequestAt, notBefore });
  }
}
