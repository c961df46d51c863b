import { contract, DEFAULT_PAGE_SIZE, type Connection, type ConnectionWrite } from '@hookpost/contract';
import { connections, pollStreams, workspaces, type ConnectionUpdate, type ConnectionWithEnv, type Db, type Scope } from '@hookpost/db';
import { initServer } from '@ts-rest/express';
import { requireScope } from '../http/context.js';
import { ApiError } from '../http/errors.js';
import type { ApiContext } from '../services/deps.js';
import { requireAllowedUrl } from '../services/webhook-delivery.js';

const s = initServer();

function toConnection(row: ConnectionWithEnv): Connection {
  return {
    id: row.id,
    workspace_id: row.workspace_id,
    environment: row.environment_name,
    integration_type: row.integration_type,
    ...(row.integration_name ? { integration_name: row.integration_name } : {}),
    categories: row.categories,
    permissions: row.permissions,
    ...(row.external_xref ? { external_xref: row.external_xref } : {}),
    is_paused: row.is_paused,
    source_adapter: row.source_adapter,
    ...(row.last_healthy_at ? { last_healthy_at: row.last_healthy_at.toISOString() } : {}),
    ...(row.last_unhealthy_at ? { last_unhealthy_at: row.last_unhealthy_at.toISOString() } : {}),
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

async function requireConnection(db: Db, scope: Scope, id: string): Promise<ConnectionWithEnv> {
  const row = await connections.getConnection(db, scope, id);
  if (!row) throw ApiError.notFound('connection');
  return row;
}

export function unifiedConnectionRouter(deps: ApiContext) {
  const { db, secrets } = deps;

  /**
   * Columns from a whole Connection (create and PUT); credentials sealed. A PUT without
   * `auth` keeps the stored credentials (`keepAuth`, when its integration stays the same): no
   * response shows them, so a connection read and sent back whole would otherwise lose them
   * (and its webhooks stop polling). Another integration's credentials are not kept.
   */
  const columns = (body: ConnectionWrite, keepAuth = false): ConnectionUpdate => ({
    integration_type: body.integration_type,
    integration_name: body.integration_name ?? null,
    categories: body.categories,
    permissions: body.permissions,
    ...(keepAuth && body.auth === undefined ? {} : { auth_encrypted: body.auth ? secrets.seal(JSON.stringify(body.auth)) : null }),
    auth_aws_arn: body.auth_aws_arn ?? null,
    external_xref: body.external_xref ?? null,
    is_paused: body.is_paused ?? false,
    source_adapter: body.source_adapter ?? 'http',
  });

  /** A source URL goes through the same SSRF guard as hook URLs (and again at connect time). */
  const checkSource = (auth: ConnectionWrite['auth'] | undefined) => requireAllowedUrl(deps, 'auth.api_url', auth?.api_url);

  const show = async (scope: Scope, id: string) => ({ status: 200 as const, body: toConnection(await requireConnection(db, scope, id)) });

  return s.router(contract.unified.connection, {
    list: async ({ query, req }) => {
      const rows = await connections.listConnections(db, requireScope(req), {
        limit: query.limit ?? DEFAULT_PAGE_SIZE,
        offset: query.offset ?? 0,
        sort: query.sort ?? 'created_at',
        order: query.order ?? 'asc',
        updatedGte: query.updated_gte,
        categories: query.categories,
        environmentName: query.env,
        externalXref: query.external_xref,
      });
      return { status: 200, body: rows.map(toConnection) };
    },
    create: async ({ body, req }) => {
      const scope = requireScope(req);
      await checkSource(body.auth);
      const environmentId = scope.environmentId ?? (await workspaces.getDefaultEnvironment(db, scope.workspaceId)).id;
      const row = await connections.insertConnection(db, {
        ...columns(body),
        integration_type: body.integration_type,
        workspace_id: scope.workspaceId,
        environment_id: environmentId,
      });
      return show(scope, row.id);
    },
    get: async ({ params, req }) => show(requireScope(req), params.id),
    update: async ({ params, body, req }) => {
      const scope = requireScope(req);
      const current = await requireConnection(db, scope, params.id);
      await checkSource(body.auth);
      await connections.updateConnection(db, scope, params.id, columns(body, body.integration_type === current.integration_type));
      await pollStreams.retryConnection(db, params.id);
      return show(scope, params.id);
    },
    patch: async ({ params, body, req }) => {
      const scope = requireScope(req);
      await requireConnection(db, scope, params.id);
      await checkSource(body.auth);
      const set: ConnectionUpdate = {};
      if (body.integration_type !== undefined) set.integration_type = body.integration_type;
      if (body.integration_name !== undefined) set.integration_name = body.integration_name;
      // The SDK always sends these arrays; empty means "unchanged" (see ConnectionPatch).
      if (body.categories?.length) set.categories = body.categories;
      if (body.permissions?.length) set.permissions = body.permissions;
      if (body.auth !== undefined) set.auth_encrypted = secrets.seal(JSON.stringify(body.auth));
      if (body.auth_aws_arn !== undefined) set.auth_aws_arn = body.auth_aws_arn;
      if (body.external_xref !== undefined) set.external_xref = body.external_xref;
      if (body.is_paused !== undefined) set.is_paused = body.is_paused;
      if (body.source_adapter !== undefined) set.source_adapter = body.source_adapter;
      if (Object.keys(set).length > 0) await connections.updateConnection(db, scope, params.id, set);
      // New credentials, adapter or pause state: poll again now rather than after a back-off.
      if (set.auth_encrypted !== undefined || set.is_paused !== undefined || set.source_adapter !== undefined) {
        await pollStreams.retryConnection(db, params.id);
      }
      return show(scope, params.id);
    },
    remove: async ({ params, req }) => {
      const scope = requireScope(req);
      await requireConnection(db, scope, params.id);
      await connections.deleteConnection(db, scope, params.id);
      return { status: 200, body: undefined };
    },
  });
}
