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
  asOpenApi30(doc);
  return doc;
}

/**
 * What the generator writes in OpenAPI 3.1's or JSON Schema's way, written as 3.0 says (the
 * document declares 3.0): a numeric `exclusiveMinimum`/`exclusiveMaximum` (from zod's
 * `positive()`) becomes the bound with `exclusive…: true`, and `nullable` without a `type` (any
 * value, from `z.unknown()`) goes. Validators refused the document, and code generators failed on it.
 */
function asOpenApi30(node: unknown): void {
  if (Array.isArray(node)) {
    for (const item of node) asOpenApi30(item);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const schema = node as Record<string, unknown>;
  for (const [exclusive, bound] of [['exclusiveMinimum', 'minimum'], ['exclusiveMaximum', 'maximum']] as const) {
    const value = schema[exclusive];
    if (typeof value === 'number') {
      schema[bound] = value;
      schema[exclusive] = true;
    }
  }
  if (schema.nullable !== undefined && schema.type === undefined && schema.$ref === undefined) delete schema.nullable;
  for (const [key, value] of Object.entries(schema)) {
    // A `properties` map names fields, not keywords: a field called `nullable` is left alone.
    if (key === 'properties' && value !== null && typeof value === 'object') for (const field of Object.values(value)) asOpenApi30(field);
    else asOpenApi30(value);
  }
}
