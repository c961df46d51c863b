import type { Db } from '../client.js';
import { inTransaction } from '../client.js';
import type { EnvironmentRow, WorkspaceRow } from '../schema.js';

export const DEFAULT_ENVIRONMENT = 'Production';

export async function createWorkspace(
  db: Db,
  name: string,
): Promise<{ workspace: WorkspaceRow; environment: EnvironmentRow }> {
  return inTransaction(db, async (trx) => {
    const workspace = await trx.insertInto('workspaces').values({ name }).returningAll().executeTakeFirstOrThrow();
    const environment = await trx
      .insertInto('environments')
      .values({ workspace_id: workspace.id, name: DEFAULT_ENVIRONMENT, is_default: true })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { workspace, environment };
  });
}

export async function getWorkspace(db: Db, id: string): Promise<WorkspaceRow | undefined> {
  return db.selectFrom('workspaces').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The oldest workspace, created as "Default" when there is none (local start). */
export async function ensureDefaultWorkspace(db: Db): Promise<{ workspace: WorkspaceRow; environment: EnvironmentRow }> {
  const workspace = await db.selectFrom('workspaces').selectAll().orderBy('created_at').orderBy('id').limit(1).executeTakeFirst();
  if (!workspace) return createWorkspace(db, 'Default');
  return { workspace, environment: await getDefaultEnvironment(db, workspace.id) };
}

export async function listEnvironments(db: Db, workspaceId: string): Promise<EnvironmentRow[]> {
  return db.selectFrom('environments').selectAll().where('workspace_id', '=', workspaceId).orderBy('created_at').orderBy('id').execute();
}

export async function getDefaultEnvironment(db: Db, workspaceId: string): Promise<EnvironmentRow> {
  return db
    .selectFrom('environments')
    .selectAll()
    .where('workspace_id', '=', workspaceId)
    .where('is_default', '=', true)
    .executeTakeFirstOrThrow();
}

export async function findEnvironment(
  db: Db,
  workspaceId: string,
  by: { id: string } | { name: string },
): Promise<EnvironmentRow | undefined> {
  let q = db.selectFrom('environments').selectAll().where('workspace_id', '=', workspaceId);
  q = 'id' in by ? q.where('id', '=', by.id) : q.where('name', '=', by.name);
  return q.executeTakeFirst();
}

/** Creates an environment; undefined when the name is taken. */
export async function createEnvironment(db: Db, workspaceId: string, name: string): Promise<EnvironmentRow | undefined> {
  return db
    .insertInto('environments')
    .values({ workspace_id: workspaceId, name })
    .onConflict((oc) => oc.columns(['workspace_id', 'name']).doNothing())
    .returningAll()
    .executeTakeFirst();
}
