/**
 * Agent credentials: the charm trades the client id and secret key (a Juju secret) for a
 * refresh token at the Testflinger server, and keeps it in the token file every agent reads.
 */
import * as fs from 'node:fs';
import { nodeHttpTransport } from '../agent/http';
import { writeFileAtomic } from '../common/fsutil';

/** Refresh tokens are renewed after this long, as upstream's charm does. */
export const TOKEN_MAX_AGE_MS = 3 * 24 * 3600 * 1000;
const REQUEST_TIMEOUT_MS = 30_000;

export class AuthError extends Error {
  override readonly name = 'AuthError';
}

export interface Credentials {
  clientId: string;
  secretKey: string;
}

/** Reads `client-id` and `secret-key` from the secret's content. */
export function credentialsFromSecret(content: Readonly<Record<string, string>>): Credentials {
  const clientId = content['client-id'];
  const secretKey = content['secret-key'];
  if (!clientId || !secretKey) throw new AuthError('the secret must hold client-id and secret-key');
  return { clientId, secretKey };
}

export function tokenIsFresh(tokenFile: string, now: number): boolean {
  try {
    const stored = JSON.parse(fs.readFileSync(tokenFile, 'utf8')) as { refresh_token?: string; obtained_at?: string };
    return !!stored.refresh_token && now - Date.parse(stored.obtained_at ?? '') < TOKEN_MAX_AGE_MS;
  } catch {
    return false;
  }
}

/** `POST /v1/oauth2/token` with HTTP Basic; returns the refresh token. */
export async function obtainRefreshToken(server: string, credentials: Credentials): Promise<string> {
  const url = new URL(`${server.replace(/\/+$/, '')}/v1/oauth2/token`);
  const basic = Buffer.from(`${credentials.clientId}:${credentials.secretKey}`).toString('base64');
  let res;
  try {
    res = await nodeHttpTransport(url, { method: 'POST', headers: { authorization: `Basic ${basic}` }, timeoutMs: REQUEST_TIMEOUT_MS });
  } catch (error) {
    throw new AuthError(`cannot reach ${url.origin}: ${(error as Error).message}`);
  }
  const text = res.body.toString('utf8');
  if (res.status !== 200) throw new AuthError(`${url.origin} refused the credentials (HTTP ${res.status}${text ? `: ${text.slice(0, 120)}` : ''})`);
  const token = (JSON.parse(text) as { refresh_token?: string }).refresh_token;
  if (!token) throw new AuthError(`${url.origin} answered without a refresh_token`);
  return token;
}

/**
 * Writes the token file the agents read. On a unit it is root's with the agent group allowed to
 * read (0640), in a root-owned directory, so no job can replace it; in a sandbox it is ours (0600).
 */
export function writeTokenFile(tokenFile: string, refreshToken: string, now: number, owner?: { uid: number; gid: number }): void {
  const content = `${JSON.stringify({ refresh_token: refreshToken, obtained_at: new Date(now).toISOString() })}\n`;
  writeFileAtomic(tokenFile, content, owner ? 0o640 : 0o600, { dirMode: 0o755, ...(owner ? { owner } : {}) });
}
