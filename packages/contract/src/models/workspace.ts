import { z } from 'zod';
import { IsoDateTime, Uuid } from '../common.js';

const Name = z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters');

export const Environment = z.object({
  id: Uuid,
  workspace_id: Uuid,
  name: z.string(),
  created_at: IsoDateTime,
});
export type Environment = z.infer<typeof Environment>;

export const EnvironmentCreate = z.object({ name: Name });

export const Workspace = z.object({
  id: Uuid,
  name: z.string(),
  created_at: IsoDateTime,
  environments: z.array(Environment),
});
export type Workspace = z.infer<typeof Workspace>;

export const ApiKey = z.object({
  id: Uuid,
  workspace_id: Uuid,
  /** The environment the key is limited to; absent for a workspace-wide key. */
  environment_id: Uuid.optional(),
  name: z.string(),
  /** The first characters of the key, to tell keys apart. The key itself is never shown again. */
  prefix: z.string(),
  created_at: IsoDateTime,
  last_used_at: IsoDateTime.optional(),
});
export type ApiKey = z.infer<typeof ApiKey>;

/** Only the create response carries `key`. */
export const ApiKeyWithSecret = ApiKey.extend({ key: z.string() });
export type ApiKeyWithSecret = z.infer<typeof ApiKeyWithSecret>;

export const ApiKeyCreate = z.object({
  name: Name.optional(),
  environment_id: Uuid.optional(),
});

export const WorkspaceCreate = z.object({ name: Name });

/** A new workspace with its default environment and a first API key. */
export const WorkspaceCreated = z.object({
  workspace: Workspace,
  api_key: ApiKeyWithSecret,
});
