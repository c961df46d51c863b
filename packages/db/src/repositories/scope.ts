/** What an API key may see: one workspace, and one environment of it or all of them. */
export interface Scope {
  workspaceId: string;
  /** null: every environment of the workspace. */
  environmentId: string | null;
}
