/**
 * Agent credentials: the charm trades the client id and secret key (a Juju secret) for a
 * refresh token at the Testflinger server, and keeps it in the token file. On a unit that file is
 * root's alone: each agent's root wrapper opens it and hands the agent the descriptor
 * (TESTFLINGER_TOKEN_FD), so neither a job (even one run as the agent's user, test-sandbox=false)
 * nor another local user can read it. A renewal is written into the same file, in place, so the
 * descriptors the agents hold see it (docs/security.md).
 */
import * as fs from 'node:fs';
import { nodeHttpTransport } from '../agent/http';
import { NotRegularFile, openRegularFile, writeFileAtomic } from '../common/fsutil';

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
 * On a unit the file always holds this many bytes (the token's JSON, padded with spaces, which
 * JSON.parse ignores): a renewal is one write at offset 0 with nothing to truncate, so an agent
 * reading through its descriptor never sees the file empty.
 */
export const TOKEN_FILE_SIZE = 4096;

function padded(json: string, what = "the server's refresh token"): Buffer {
  if (Buffer.byteLength(json) >= TOKEN_FILE_SIZE) throw new AuthError(`${what} is longer than ${TOKEN_FILE_SIZE - 1} bytes`);
  return Buffer.from(`${json}${' '.repeat(TOKEN_FILE_SIZE - 1 - Buffer.byteLength(json))}\n`);
}

/**
 * Writes `content` over the existing file at offset 0 (same inode: the agents' descriptors see
 * it), root's and 0600, never following a link; false when there is no regular file to write.
 */
function rewriteInPlace(tokenFile: string, content: Buffer): boolean {
  let fd: number;
  try {
    ({ fd } = openRegularFile(tokenFile, fs.constants.O_WRONLY));
  } catch (error) {
    if (error instanceof NotRegularFile || (error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  try {
    fs.fchownSync(fd, 0, 0);
    fs.fchmodSync(fd, 0o600);
    fs.writeSync(fd, content, 0, content.length, 0);
    fs.ftruncateSync(fd, content.length);
    return true;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes the token file. On a unit (`rootOnly`) it is root's, 0600, padded to TOKEN_FILE_SIZE and
 * rewritten in place; in a sandbox it is ours (0600), replaced atomically, and the agents read it by path.
 */
export function writeTokenFile(tokenFile: string, refreshToken: string, now: number, rootOnly?: { uid: number; gid: number }): void {
  writeHandedFile(tokenFile, JSON.stringify({ refresh_token: refreshToken, obtained_at: new Date(now).toISOString() }), "the server's refresh token", rootOnly);
}

/**
 * A file the agents get through a descriptor their root wrapper opens (the token, the MQTT
 * credentials): on a unit (`rootOnly`) root's, 0600, padded and rewritten in place; in a
 * sandbox ours (0600), replaced atomically, read by path. `json` may be empty (nothing yet).
 */
export function writeHandedFile(file: string, json: string, what: string, rootOnly?: { uid: number; gid: number }): void {
  if (!rootOnly) {
    writeFileAtomic(file, `${json}\n`, 0o600, { dirMode: 0o755 });
    return;
  }
  const content = padded(json, what);
  if (!rewriteInPlace(file, content)) writeFileAtomic(file, content, 0o600, { dirMode: 0o755, owner: { uid: 0, gid: 0 } });
}

/**
 * On a unit, before any agent starts: the token file exists (blank until a token is obtained, so
 * an agent started first still sees the first token through its descriptor) and is root's alone;
 * a file from before (root:testflinger-agents 0640) is closed at once, its token kept.
 */
export function prepareRootTokenFile(tokenFile: string): void {
  const stat = fs.lstatSync(tokenFile, { throwIfNoEntry: false });
  if (stat && !stat.isFile()) throw new Error(`${tokenFile} is not a regular file`);
  const text = stat ? fs.readFileSync(tokenFile, 'utf8') : '';
  if (stat && stat.uid === 0 && stat.gid === 0 && (stat.mode & 0o777) === 0o600 && stat.size === TOKEN_FILE_SIZE) return;
  const content = text.trim() === '' ? Buffer.from(`${' '.repeat(TOKEN_FILE_SIZE - 1)}\n`) : padded(text.trim());
  if (!rewriteInPlace(tokenFile, content)) writeFileAtomic(tokenFile, content, 0o600, { dirMode: 0o755, owner: { uid: 0, gid: 0 } });
}
