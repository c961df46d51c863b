import { contract } from '@hookpost/contract';
import { generateOpenApi } from '@ts-rest/open-api';
import { buildOpenApiDocument } from '/work/main/apps/api/dist/openapi.js';
const raw = generateOpenApi(contract, { info: { title: 'x', version: '1' } }, { setOperationId: 'concatenated-path' });
const done = buildOpenApiDocument('1');
const hits = [];
function walk(n, path) {
  if (Array.isArray(n)) return n.forEach((x, i) => walk(x, path + '[' + i + ']'));
  if (!n || typeof n !== 'object') return;
  if (n.nullable !== undefined && n.type === undefined && n.$ref === undefined) hits.push(path + ' keys=' + Object.keys(n).join(','));
  for (const [k, v] of Object.entries(n)) walk(v, path + '.' + k);
}
walk(raw, '$');
console.log(hits.length); console.log(hits.slice(0, 40).join('\n'));
// properties maps with names that collide
const props = [];
function walk2(n, path) {
  if (Array.isArray(n)) return n.forEach((x, i) => walk2(x, path + '[' + i + ']'));
  if (!n || typeof n !== 'object') return;
  if (n.properties) for (const k of Object.keys(n.properties)) if (['nullable','exclusiveMinimum','exclusiveMaximum','type','$ref'].includes(k)) props.push(path + '.' + k);
  for (const [k, v] of Object.entries(n)) walk2(v, path + '.' + k);
}
walk2(raw, '$'); console.log('props', props);
