import type { SecretBox } from '@hookpost/db';
import { redactUrl } from '@hookpost/delivery';

/**
 * Encrypted form and display form of a db_url, or nulls to clear it; nothing (the stored one
 * kept) when it is the masked form this API shows of the stored one: a webhook read, changed
 * and sent back whole (what the unified.to SDK's update does) would otherwise store the mask.
 */
export function sealDbUrl(
  box: SecretBox,
  url: string | null | undefined,
  stored?: { db_url_redacted: string | null },
): { db_url_encrypted?: Buffer | null; db_url_redacted?: string | null } {
  // As shown: a mask stored before redactUrl masked it rightly is shown masked anew.
  if (url && stored?.db_url_redacted && url.includes('***') && (url === stored.db_url_redacted || url === redactUrl(stored.db_url_redacted))) return {};
  if (!url) return { db_url_encrypted: null, db_url_redacted: null };
  return { db_url_encrypted: box.seal(url), db_url_redacted: redactUrl(url) };
}
