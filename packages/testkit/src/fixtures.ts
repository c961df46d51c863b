import { newId, webhooks, workspaces, type Database, type NewEvent } from '@hookpost/db';
import type { Kysely } from 'kysely';
import { createTestDatabase, type TestDatabase } from './test-database.js';

/**
 * A Truto-face webhook row written straight through the repository (no API, no secret to
 * sign with): for tests of the database layer that need a webhook to fan out to. With a
 * `connectionId` it takes only that connection's events.
 */
export async function insertPlainWebhook(
  db: Kysely<Database>,
  scope: { workspaceId: string; environmentId: string },
  hookUrl: string,
  options: { connectionId?: string } = {},
): Promise<string> {
  const row = await webhooks.insertWebhook(db, {
    workspace_id: scope.workspaceId,
    environment_id: scope.environmentId,
    connection_id: options.connectionId ?? null,
    origin: 'truto',
    integration_type: null,
    object_type: null,
    event_types: [],
    hook_url: hookUrl,
    db_type: null,
    db_url_encrypted: null,
    db_url_redacted: null,
    db_schema: null,
    db_name_prefix: null,
    interval_minutes: null,
    page_max_limit: null,
    filters: '{}',
    fields: null,
    subscriptions: [],
    meta: null,
    secret_encrypted: Buffer.from('not used here'),
    previous_secret_encrypted: null,
    previous_secret_expires_at: null,
    disabled_reason: null,
    stream_id: null,
    initial_sync: null,
    unhealthy_reason: null,
  });
  return row.id;
}

/** A `record:created` event of the scope's environment, with no connection or object type: it fans out to every plain webhook there. */
export function plainEvent(scope: { workspaceId: string; environmentId: string }, data: Record<string, unknown>): NewEvent {
  return {
    id: newId(),
    workspaceId: scope.workspaceId,
    environmentId: scope.environmentId,
    externalId: null,
    type: 'record:created',
    objectType: null,
    connectionId: null,
    data,
  };
}

export interface PlainSetup {
  t: TestDatabase;
  scope: { workspaceId: string; environmentId: string };
  webhookId: string;
}

/** The database layer's usual start: a test database of the file's own, one workspace, and one plain webhook to `hookUrl` in it. */
export async function createPlainSetup(name: string, hookUrl = `http://127.0.0.1:9/${name}`): Promise<PlainSetup> {
  const t = await createTestDatabase();
  const { workspace, environment } = await workspaces.createWorkspace(t.db, name);
  const scope = { workspaceId: workspace.id, environmentId: environment.id };
  return { t, scope, webhookId: await insertPlainWebhook(t.db, scope, hookUrl) };
}
