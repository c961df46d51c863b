import { contract } from '@hookpost/contract';
import { generateOpenApi } from '@ts-rest/open-api';

type OpenApiDocument = ReturnType<typeof generateOpenApi>;

/** The OpenAPI 3 document, generated from the contract (never written by hand). */
export function buildOpenApiDocument(version: string): OpenApiDocument {
  const doc = generateOpenApi(
    contract,
    {
      info: {
        title: 'Hookpost API',
        version,
        description:
          'Self-hosted webhooks. Speaks the unified.to webhook API (/unified/…), the Truto webhook API (/webhook…) and Hookpost\'s own (/v1/…). ' +
          'Authenticate with `Authorization: Bearer <api key>` (the bare key also works).',
      },
      servers: [{ url: '/' }],
    },
    { setOperationId: 'concatenated-path' },
  );
  doc.components = {
    ...doc.components,
    securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'A Hookpost API key' } },
  };
  doc.security = [{ apiKey: [] }];
  return doc;
}
