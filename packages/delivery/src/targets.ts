import { endpointOf, type DeliveryTarget } from './payloads.js';
import { toUnifiedWebhook } from './webhook-views.js';
import { webhooks, type Db, type SecretBox } from '@hookpost/db';

interface CachedTarget {
  /** The webhook row's `updated_at` (ms) the target was built from. */
  version: number;
  target: DeliveryTarget;
  /** False for unified-face targets: only their decrypted secrets are reused. */
  reusable: boolean;
  /** When a rotated-out secret stops being sent: the target must be rebuilt then. */
  expiresAt: number;
}

const MAX_CACHED = 50_000;

/**
 * Turns webhook rows into delivery targets, current for every attempt: a URL change or a
 * rotation applies to the next one. Secrets are decrypted once per webhook version.
 *
 * The claim reads each webhook's `updated_at` in the same statement (`webhookVersions`).
 * A target built from that version is reused without reading the webhook again, which
 * saves a round trip per claimed batch. Every change to what a Truto or Hookpost target
 * holds goes through `updateWebhook` (URL, fields, include_raw, secrets, pause, delete),
 * and `updateWebhook` bumps `updated_at`. Unified-face targets are always read afresh,
 * because their body embeds the live webhook (health, checked_at), and health updates
 * do not bump the version.
 */
export class TargetLoader {
  private readonly cache = new Map<string, CachedTarget>();
  /**
   * Whether this process has decrypted any webhook's secret. Until it has, a secret that will
   * not open says more about the key (a wrong HOOKPOST_ENCRYPTION_KEY) than about the row.
   */
  openedAny = false;

  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
  ) {}

  /**
   * Targets by webhook id; a webhook that is gone or has no URL is left out, and one whose
   * secret cannot be decrypted is in `unreadable` (with why), so that one bad row does not
   * keep every other webhook's deliveries from being sent.
   * `webhookVersions` (from the claim): ids mapped to their `updated_at`, or null when the
   * webhook no longer exists.
   */
  async load(ids: readonly string[], webhookVersions?: ReadonlyMap<string, Date | null>): Promise<LoadedTargets> {
    const now = Date.now();
    const out = new Map<string, DeliveryTarget>();
    const unreadable = new Map<string, string>();
    const toRead: string[] = [];
    for (const id of ids) {
      if (!webhookVersions) {
        toRead.push(id);
        continue;
      }
      const version = webhookVersions.get(id);
      if (version === null) continue; // deleted since it was queued
      const cached = this.cache.get(id);
      if (version !== undefined && cached?.reusable && cached.version === version.getTime() && cached.expiresAt > now) out.set(id, cached.target);
      else toRead.push(id);
    }
    if (toRead.length === 0) return { targets: out, unreadable };
    const rows = await webhooks.getWebhooksForDelivery(this.db, toRead);
    if (this.cache.size + rows.length > MAX_CACHED) this.cache.clear();
    for (const row of rows) {
      if (!row.hook_url) continue;
      const version = row.updated_at.getTime();
      const cached = this.cache.get(row.id);
      let secrets: readonly string[];
      let expiresAt: number;
      if (cached && cached.version === version && cached.expiresAt > now) {
        secrets = cached.target.secrets;
        expiresAt = cached.expiresAt;
      } else {
        const previousExpires = row.previous_secret_expires_at?.getTime() ?? 0;
        try {
          const live = [this.box.open(row.secret_encrypted)];
          if (row.previous_secret_encrypted && previousExpires > now) live.push(this.box.open(row.previous_secret_encrypted));
          secrets = live;
          this.openedAny = true;
        } catch (err) {
          unreadable.set(row.id, `the webhook's signing secret could not be decrypted (${err instanceof Error ? err.message : String(err)}); is HOOKPOST_ENCRYPTION_KEY the one it was stored with?`);
          continue;
        }
        expiresAt = previousExpires > now ? previousExpires : Number.POSITIVE_INFINITY;
      }
      const unified = row.origin === 'unified' && !!row.connection_id;
      const target: DeliveryTarget = {
        id: row.id,
        origin: row.origin,
        hookUrl: row.hook_url,
        endpoint: endpointOf(row.hook_url),
        environmentId: row.environment_id,
        fields: row.fields,
        includeRaw: row.include_raw,
        secrets,
        ...(secrets.length > 1 && Number.isFinite(expiresAt) ? { previousSecretUntil: expiresAt } : {}),
        ...(unified ? { unifiedView: toUnifiedWebhook(row) } : {}),
        ...(row.external_xref ? { externalXref: row.external_xref } : {}),
      };
      this.cache.set(row.id, { version, target, reusable: !unified, expiresAt });
      out.set(row.id, target);
    }
    return { targets: out, unreadable };
  }
}

export interface LoadedTargets {
  targets: Map<string, DeliveryTarget>;
  /** Webhooks whose secret could not be decrypted, with why (no secret in it). */
  unreadable: Map<string, string>;
}
