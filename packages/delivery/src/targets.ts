import type { DeliveryTarget } from './payloads.js';
import { toUnifiedWebhook } from './webhook-views.js';
import { webhooks, type Db, type SecretBox } from '@hookpost/db';

/**
 * Turns webhook rows into delivery targets, fresh for every claimed batch (so a URL
 * change or a rotation applies to the next attempt), decrypting each secret once per
 * webhook version.
 */
export class TargetLoader {
  private readonly decrypted = new Map<string, { version: number; secrets: string[]; expiresAt: number }>();

  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
  ) {}

  async load(ids: readonly string[]): Promise<Map<string, DeliveryTarget>> {
    const rows = await webhooks.getWebhooksForDelivery(this.db, ids);
    const now = Date.now();
    const out = new Map<string, DeliveryTarget>();
    for (const row of rows) {
      if (!row.hook_url) continue;
      const version = row.updated_at.getTime();
      let cached = this.decrypted.get(row.id);
      if (!cached || cached.version !== version || cached.expiresAt <= now) {
        const secrets = [this.box.open(row.secret_encrypted)];
        const previousExpires = row.previous_secret_expires_at?.getTime() ?? 0;
        if (row.previous_secret_encrypted && previousExpires > now) secrets.push(this.box.open(row.previous_secret_encrypted));
        cached = { version, secrets, expiresAt: previousExpires > now ? previousExpires : Number.POSITIVE_INFINITY };
        this.decrypted.set(row.id, cached);
      }
      out.set(row.id, {
        id: row.id,
        origin: row.origin,
        hookUrl: row.hook_url,
        environmentId: row.environment_id,
        fields: row.fields,
        includeRaw: row.include_raw,
        secrets: cached.secrets,
        ...(row.origin === 'unified' && row.connection_id ? { unifiedView: toUnifiedWebhook(row) } : {}),
        ...(row.external_xref ? { externalXref: row.external_xref } : {}),
      });
    }
    if (this.decrypted.size > 50_000) this.decrypted.clear();
    return out;
  }
}
