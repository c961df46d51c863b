/**
 * @hookpost/contract is a publishable package: pack it, install the tarball in a folder
 * outside the workspace with plain npm, and import it from plain Node.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(path.join(tmpdir(), 'hookpost-contract-pack-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

it('packs, installs outside the workspace and imports from plain Node', { timeout: 180_000 }, () => {
  execFileSync('pnpm', ['pack', '--pack-destination', work], { cwd: pkgDir, stdio: 'pipe' });
  const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
  expect(tarball).toBeDefined();
  const consumer = path.join(work, 'consumer');
  execFileSync('mkdir', ['-p', consumer]);
  writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', path.join(work, tarball as string)], {
    cwd: consumer,
    stdio: 'pipe',
  });
  writeFileSync(
    path.join(consumer, 'check.mjs'),
    `
import { contract, UnifiedWebhook, TrutoWebhookCreate, ErrorEnvelope } from '@hookpost/contract';
import { verifyStandard, signStandardHeaders, generateWebhookSecret } from '@hookpost/contract/signing';
const routes = [contract.unified.webhook.list.path, contract.truto.webhook.create.path, contract.unified.connection.get.path];
const parsed = TrutoWebhookCreate.safeParse({ target_url: 'ftp://x' });
const secret = generateWebhookSecret();
const headers = signStandardHeaders([secret], 'msg_1', Math.floor(Date.now() / 1000), '{}');
console.log(JSON.stringify({ routes, rejects: !parsed.success, verified: verifyStandard([secret], headers, '{}').ok,
  envelope: ErrorEnvelope.safeParse({ error: { code: 'not_found', message: 'x' } }).success,
  unified: typeof UnifiedWebhook.parse }));
`,
  );
  const out = JSON.parse(execFileSync(process.execPath, ['check.mjs'], { cwd: consumer, encoding: 'utf8' })) as Record<string, unknown>;
  expect(out).toEqual({
    routes: ['/unified/webhook', '/webhook', '/unified/connection/:id'],
    rejects: true,
    verified: true,
    envelope: true,
    unified: 'function',
  });
  // Declarations ship too, and no server code does.
  const installed = path.join(consumer, 'node_modules/@hookpost/contract');
  const files = execFileSync('find', [installed, '-type', 'f'], { encoding: 'utf8' });
  expect(files).toContain('dist/index.d.ts');
  expect(files).toContain('dist/signing.d.ts');
  expect(files).not.toMatch(/express|kysely/);
});
