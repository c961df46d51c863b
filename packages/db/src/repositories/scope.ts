import { sql, type RawBuilder, type SqlBool } from 'kysely';

/** What an API key may see: one workspace, and one environment of it or all of them. */
export interface Scope {
  workspaceId: string;
  /** null: every environment of the workspace. */
  environmentId: string | null;
}

/**
 * `workspace_id = … [and environment_id = …]` for any table with both columns
 * (optionally through an alias), so every scoped query filters the same way.
 */
export function inScope(scope: Scope, alias?: string): RawBuilder<SqlBool> {
  const col = (name: string) => sql.ref(alias ? `${alias}.${name}` : name);
  return scope.environmentId === null
    ? sql<SqlBool>`${col('workspace_id')} = ${scope.workspaceId}`
    : sql<SqlBool>`${col('workspace_id')} = ${scope.workspaceId} and ${col('environment_id')} = ${scope.environmentId}`;
}
