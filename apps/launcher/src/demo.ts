/**
 * The demo `pnpm start` sets up so a newcomer sees virtual webhooks work: a connection
 * to the mock provider (account `demo`) and a virtual webhook on its crm_contact
 * records, delivering to the mock receiver. `include_all` makes the first run send
 * the existing records at once (INITIAL-PARTIAL … INITIAL-COMPLETE); after that the
 * provider's generator changes a few records a minute and the webhook's one-minute
 * polls deliver them. Idempotent: a restart reuses (and re-points) what exists.
 */
const DEMO_XREF = 'hookpost-demo';
const DEMO_PATH = '/demo/virtual';

interface DemoInput {
  apiUrl: string;
  apiKey: string;
  receiverUrl: string;
  providerUrl: string;
}

async function call<T>(input: DemoInput, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(input.apiUrl + path, {
    method,
    headers: { authorization: `Bearer ${input.apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`demo setup: ${method} ${path} answered ${res.status}: ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

export async function ensureDemo(input: DemoInput): Promise<{ connectionId: string; webhookId: string; path: string }> {
  const auth = { api_url: input.providerUrl, access_token: 'demo' };
  const existing = await call<{ id: string }[]>(input, 'GET', `/unified/connection?external_xref=${DEMO_XREF}`);
  let connectionId = existing[0]?.id;
  if (connectionId) {
    await call(input, 'PATCH', `/unified/connection/${connectionId}`, { auth });
  } else {
    const created = await call<{ id: string }>(input, 'POST', '/unified/connection', {
      integration_type: 'mockcrm',
      integration_name: 'Mock CRM (demo)',
      categories: ['crm'],
      permissions: [],
      external_xref: DEMO_XREF,
      auth,
    });
    connectionId = created.id;
  }
  const hooks = await call<{ id: string; hook_url?: string }[]>(input, 'GET', `/unified/webhook?connection_id=${connectionId}`);
  const hookUrl = input.receiverUrl + DEMO_PATH;
  let webhookId = hooks.find((h) => h.hook_url === hookUrl)?.id;
  if (!webhookId) {
    const created = await call<{ id: string }>(input, 'POST', '/unified/webhook?include_all=true', {
      connection_id: connectionId,
      object_type: 'crm_contact',
      event: 'updated',
      hook_url: hookUrl,
      interval: 1,
      page_max_limit: 10,
    });
    webhookId = created.id;
  }
  // Teach the receiver the webhook's secret so it can verify the signatures.
  const { secret } = await call<{ secret: string }>(input, 'GET', `/v1/webhooks/${webhookId}/secret`);
  await fetch(`${input.receiverUrl}/_control/secrets`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ secret }) });
  return { connectionId, webhookId, path: DEMO_PATH };
}
