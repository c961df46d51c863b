import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** A value generated once and kept in the data folder (mode 600), e.g. the local encryption key. */
export async function persistentValue(dataDir: string, name: string, generate: () => string): Promise<string> {
  const file = path.join(dataDir, name);
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  await mkdir(dataDir, { recursive: true });
  const value = generate();
  await writeFile(file, value + '\n', { mode: 0o600 });
  return value;
}

export const newEncryptionKey = () => randomBytes(32).toString('base64');
