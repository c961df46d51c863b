import {
  generateWebhookSecret,
  recordEventType,
  type TrutoWebhookCreate,
  type TrutoWebhookUpdate,
  type UnifiedWebhookPatch,
  type UnifiedWebhookWrite,
} from '@hookpost/contract';
import {
  connections,
  inTransaction,
  pollStreams,
  webhooks,
  workspaces,
  type Db,
  type Scope,
  type WebhookUpdate,
  type WebhookWithEnv,
} from '@hookpost/db';
import { ApiError } from '../http/errors.js';
import type { ApiContext } from './deps.js';
import { sealDbUrl } from './secrets.js';
import { requireAllowedUrl, syncQueueWithState } from './webhook-delivery.js';

/** The connection a webhook names, which must belong to the caller's workspace (and environment). */
async function requireConnection(db: Db, scope: Scope, id: string) {
  const connection = await connections.getConnection(db, scope, id);
  if (!connection) throw ApiError.invalidField('connection_id', 'no connection with this id in this workspace');
  return connection;
}

function checkInterval(deps: ApiContext, interval: number | undefined): void {
  const min = deps.config.minIntervalMinutes;
  if (interval !== undefined && interval < min) throw ApiError.invalidField('interval', `must be at least ${min} minute(s)`);
}

/** Canonical event types from `event` and/or the 2023 `events[]`. */
function unifiedEventTypes(w: { event?: string | undefined; events?: string[] | undefined }): string[] {
  const words = [...(w.event ? [w.event] : []), ...(w.events ?? [])];
  return [...new Set(words)].map(recordEventType);
}

/** Columns set from a whole unified.to Webhook (create and PUT). */
function unifiedColumns(deps: ApiContext, w: UnifiedWebhookWrite, current?: { db_url_redacted: string | null }): WebhookUpdate {
  return {
    object_type: w.object_type,
    event_types: unifiedEventTypes(w),
    legacy_events: w.events !== undefined,
    hook_url: w.hook_url ?? null,
    db_type: w.db_type ?? null,
    ...sealDbUrl(deps.secrets, w.db_url, current),
    db_schema: w.db_schema ?? null,
    db_name_prefix: w.db_name_prefix ?? null,
    webhook_type: w.webhook_type ?? 'virtual',
    interval_minutes: w.interval ?? null,
    page_max_limit: w.page_max_limit ?? null,
    filters: JSON.stringify(w.filters ?? {}),
    fields: w.fields ?? null,
    include_raw: w.include_raw ?? false,
    is_beta: w.is_beta ?? false,
    subscriptions: w.subscriptions ?? [],
    meta: w.meta ? JSON.stringify(w.meta) : null,
    ...(w.is_paused !== undefined ? pauseColumns(w.is_paused) : {}),
  };
}

/** unified.to's `is_paused` and Truto's `is_active` are two views of one switch. */
function pauseColumns(paused: boolean): WebhookUpdate {
  return paused ? { is_paused: true } : { is_paused: false, is_active: true };
}

/**
 * Unpausing a stopped webhook clears its health as resume does (README): healthy, and a new
 * failure streak. With the old `failing_since` kept, the first failure after the unpause
 * paused it again at once (it had been "failing" for longer than HEALTH_PAUSE_AFTER_SECONDS).
 * It is the Truto face's only way back (PATCH is_active=true). `before` must be read under
 * the row's lock (lockWebhook), or a pause by the worker committing meanwhile goes unseen.
 */
function unpauseColumns(before: Pick<WebhookWithEnv, 'is_active' | 'is_paused'>, after: WebhookUpdate): WebhookUpdate {
  const stopped = before.is_paused || !before.is_active;
  return stopped && after.is_paused === false && after.is_active === true ? webhooks.freshHealth() : {};
}

export async function createUnifiedWebhook(
  deps: ApiContext,
  scope: Scope,
  body: UnifiedWebhookWrite,
  includeAll: boolean,
): Promise<string> {
  checkInterval(deps, body.interval);
  await requireAllowedUrl(deps, 'hook_url', body.hook_url);
  return inTransaction(deps.db, async (trx) => {
    const connection = await requireConnection(trx, scope, body.connection_id);
    const row = await webhooks.insertWebhook(trx, {
      ...unifiedColumns(deps, body),
      workspace_id: scope.workspaceId,
      environment_id: connection.environment_id,
      connection_id: connection.id,
      integration_type: connection.integration_type,
      origin: 'unified',
      secret_encrypted: deps.secrets.seal(generateWebhookSecret()),
      initial_sync: includeAll ? 'pending' : null,
    });
    await pollStreams.syncWebhookStream(trx, row, deps.config.polling.defaultIntervalMinutes);
    return row.id;
  });
}

export async function replaceUnifiedWebhook(deps: ApiContext, scope: Scope, id: string, body: UnifiedWebhookWrite): Promise<void> {
  checkInterval(deps, body.interval);
  await requireAllowedUrl(deps, 'hook_url', body.hook_url);
  await inTransaction(deps.db, async (trx) => {
    await webhooks.lockWebhook(trx, id);
    const current = await requireUnifiedWebhook(trx, scope, id);
    const connection = await requireConnection(trx, scope, body.connection_id);
    const columns = unifiedColumns(deps, body, current);
    const unpaused = unpauseColumns(current, columns);
    await webhooks.updateWebhook(trx, scope, id, {
      ...columns,
      ...unpaused,
      connection_id: connection.id,
      environment_id: connection.environment_id,
      integration_type: connection.integration_type,
    });
    const updated = await requireUnifiedWebhook(trx, scope, id);
    await syncQueueWithState(trx, updated);
    await pollStreams.syncWebhookStream(trx, updated, deps.config.polling.defaultIntervalMinutes, { restarted: Object.keys(unpaused).length > 0 });
  });
}

export async function patchUnifiedWebhook(deps: ApiContext, scope: Scope, id: string, body: UnifiedWebhookPatch): Promise<void> {
  checkInterval(deps, body.interval);
  await requireAllowedUrl(deps, 'hook_url', body.hook_url);
  await inTransaction(deps.db, async (trx) => {
    await webhooks.lockWebhook(trx, id);
    const current = await requireUnifiedWebhook(trx, scope, id);
    const set: WebhookUpdate = {};
    if (body.connection_id !== undefined && body.connection_id !== current.connection_id) {
      const connection = await requireConnection(trx, scope, body.connection_id);
      Object.assign(set, {
        connection_id: connection.id,
        environment_id: connection.environment_id,
        integration_type: connection.integration_type,
      });
    }
    if (body.object_type !== undefined) set.object_type = body.object_type;
    if (body.event !== undefined || body.events !== undefined) {
      set.event_types = unifiedEventTypes(body);
      if (body.events !== undefined) set.legacy_events = true;
    }
    if (body.hook_url !== undefined) set.hook_url = body.hook_url;
    if (body.db_url !== undefined) Object.assign(set, sealDbUrl(deps.secrets, body.db_url, current));
    if (body.db_type !== undefined) set.db_type = body.db_type;
    if (body.db_schema !== undefined) set.db_schema = body.db_schema;
    if (body.db_name_prefix !== undefined) set.db_name_prefix = body.db_name_prefix;
    if (body.webhook_type !== undefined) set.webhook_type = body.webhook_type;
    if (body.interval !== undefined) set.interval_minutes = body.interval;
    if (body.page_max_limit !== undefined) set.page_max_limit = body.page_max_limit;
    if (body.filters !== undefined) set.filters = JSON.stringify(body.filters);
    if (body.fields !== undefined) set.fields = body.fields;
    if (body.include_raw !== undefined) set.include_raw = body.include_raw;
    if (body.is_beta !== undefined) set.is_beta = body.is_beta;
    if (body.subscriptions !== undefined) set.subscriptions = body.subscriptions;
    if (body.meta !== undefined) set.meta = body.meta === null ? null : JSON.stringify(body.meta);
    let restarted = false;
    if (body.is_paused !== undefined) {
      const pause = pauseColumns(body.is_paused);
      const unpaused = unpauseColumns(current, pause);
      restarted = Object.keys(unpaused).length > 0;
      Object.assign(set, pause, unpaused);
    }

    // The merged webhook must still have somewhere to deliver, and a complete db target.
    const hookUrl = set.hook_url !== undefined ? set.hook_url : current.hook_url;
    const dbUrl = set.db_url_encrypted !== undefined ? set.db_url_encrypted : current.db_url_encrypted;
    const dbType = set.db_type !== undefined ? set.db_type : current.db_type;
    if (!hookUrl && !dbUrl) throw ApiError.invalidField('hook_url', 'a webhook needs a hook_url or a db_url');
    if (!!dbUrl !== !!dbType) throw ApiError.invalidField(dbUrl ? 'db_type' : 'db_url', 'db_type and db_url go together');
    if (Object.keys(set).length > 0) await webhooks.updateWebhook(trx, scope, id, set);
    const updated = await requireUnifiedWebhook(trx, scope, id);
    if (body.is_paused !== undefined) await syncQueueWithState(trx, updated);
    await pollStreams.syncWebhookStream(trx, updated, deps.config.polling.defaultIntervalMinutes, { restarted });
  });
}

/** unified.to's resume: healthy, unpaused, active again, and its held deliveries go out. */
export async function resumeUnifiedWebhook(deps: ApiContext, scope: Scope, id: string): Promise<void> {
  await inTransaction(deps.db, async (trx) => {
    await requireUnifiedWebhook(trx, scope, id);
    await webhooks.resumeWebhook(trx, scope, id);
    const resumed = await requireUnifiedWebhook(trx, scope, id);
    await syncQueueWithState(trx, resumed);
    await pollStreams.syncWebhookStream(trx, resumed, deps.config.polling.defaultIntervalMinutes, { runNow: true, restarted: true });
  });
}

/** A webhook the unified.to face can see, or 404. */
export async function requireUnifiedWebhook(db: Db, scope: Scope, id: string): Promise<WebhookWithEnv> {
  const row = await webhooks.getWebhook(db, scope, id);
  if (!row || row.connection_id === null || row.object_type === null) throw ApiError.notFound('webhook');
  return row;
}

/** A webhook the Truto face can see, or 404. */
export async function requireTrutoWebhook(db: Db, scope: Scope, id: string): Promise<WebhookWithEnv> {
  const row = await webhooks.getWebhook(db, scope, id);
  if (!row || row.hook_url === null) throw ApiError.notFound('webhook');
  return row;
}

/** The environment a new Truto webhook goes to: the named one, the key's, or the default. */
async function targetEnvironment(db: Db, scope: Scope, environmentId: string | undefined): Promise<string> {
  if (environmentId !== undefined) {
    const env = await workspaces.findEnvironment(db, scope.workspaceId, { id: environmentId });
    if (!env || (scope.environmentId !== null && env.id !== scope.environmentId)) {
      throw ApiError.invalidField('environment_id', 'no environment with this id in this workspace');
    }
    return env.id;
  }
  return scope.environmentId ?? (await workspaces.getDefaultEnvironment(db, scope.workspaceId)).id;
}

export async function createTrutoWebhook(
  deps: ApiContext,
  scope: Scope,
  body: TrutoWebhookCreate,
): Promise<{ id: string; secret: string }> {
  await requireAllowedUrl(deps, 'target_url', body.target_url);
  const secret = generateWebhookSecret();
  const environmentId = await targetEnvironment(deps.db, scope, body.environment_id);
  const row = await webhooks.insertWebhook(deps.db, {
    workspace_id: scope.workspaceId,
    environment_id: environmentId,
    origin: 'truto',
    event_types: [...new Set(body.event_types ?? [])],
    hook_url: body.target_url,
    webhook_type: 'native',
    is_active: body.is_active ?? true,
    secret_encrypted: deps.secrets.seal(secret),
  });
  return { id: row.id, secret };
}

export async function updateTrutoWebhook(deps: ApiContext, scope: Scope, id: string, body: TrutoWebhookUpdate): Promise<void> {
  await requireTrutoWebhook(deps.db, scope, id); // 404 before the URL check's 400
  await requireAllowedUrl(deps, 'target_url', body.target_url);
  await inTransaction(deps.db, async (trx) => {
    await webhooks.lockWebhook(trx, id);
    const current = await requireTrutoWebhook(trx, scope, id);
    const set: WebhookUpdate = {};
    if (body.target_url !== undefined) set.hook_url = body.target_url;
    if (body.event_types !== undefined) {
      // A unified.to webhook (a connection and an object type) is about records: left with other
      // types only, the unified face would show an `event` it no longer receives.
      const recordEvents = body.event_types.length === 0 || body.event_types.some((t) => t.startsWith('record:'));
      if (current.connection_id !== null && current.object_type !== null && !recordEvents) {
        throw ApiError.invalidField('event_types', 'a unified.to webhook needs at least one record:* event type (or none: all)');
      }
      set.event_types = [...new Set(body.event_types)];
    }
    if (body.is_active !== undefined) Object.assign(set, body.is_active ? { is_active: true, is_paused: false } : { is_active: false });
    const unpaused = unpauseColumns(current, set);
    Object.assign(set, unpaused);
    if (Object.keys(set).length > 0) await webhooks.updateWebhook(trx, scope, id, set);
    if (body.is_active !== undefined) {
      const updated = await requireTrutoWebhook(trx, scope, id);
      await syncQueueWithState(trx, updated);
      // A virtual webhook (made on the unified face) activated here: its stream, dormant while
      // it was stopped, runs again (it stayed asleep for ever).
      await pollStreams.syncWebhookStream(trx, updated, deps.config.polling.defaultIntervalMinutes, { restarted: Object.keys(unpaused).length > 0 });
    }
  });
}
