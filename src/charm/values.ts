/**
 * Strict shapes for the values an operator or a config repo hands the charm. Each one ends up in
 * a program file, a script, a git argv or a status line, so they are checked with patterns that
 * reject rather than escape, with length caps and linear-time checks (docs/security.md).
 */

/** Any C0 control character or DEL; none of our values may carry one, except where said. */
const CONTROL = /[\u0000-\u001f\u007f]/;
/** Characters a shell, supervisord's parser or git's option parser treats specially. */
const SPECIAL = /[\s"'`\\$%;,<>|&*?{}[\]^~!#]/;

const MAX_URL_LENGTH = 1024;
const MAX_REF_LENGTH = 200;
const MAX_PATH_SEGMENT = 64;

export class ValueError extends Error {
  override readonly name = 'ValueError';
}

function refuse(reason: string): never {
  throw new ValueError(reason);
}

function capLength(value: string, max: number): void {
  if (value.length > max) refuse(`is longer than ${max} characters`);
}

/** A path segment the charm may use as a file or program name: letters, digits, `._-`. */
export const SAFE_NAME = new RegExp(`^[A-Za-z0-9][A-Za-z0-9._-]{0,${MAX_PATH_SEGMENT - 1}}$`);

/** A relative path of safe segments (`lab1`, `site/lab1`), never `..`, never absolute. */
export function checkRelativeDir(value: string): string {
  capLength(value, 255);
  const segments = value.replace(/\/+$/, '').split('/');
  if (segments.length > 8) refuse('has more than 8 path segments');
  for (const segment of segments) {
    if (!SAFE_NAME.test(segment) || /^\.+$/.test(segment)) {
      refuse(`must be a relative path of names made of letters, digits, '.', '_' and '-' (at most ${MAX_PATH_SEGMENT} each)`);
    }
  }
  return segments.join('/');
}

/**
 * A git branch or tag name as `git check-ref-format --branch` would take it, minus the exotic
 * parts, and never something git could read as an option.
 */
export function checkGitRef(value: string): string {
  capLength(value, MAX_REF_LENGTH);
  if (!/^[A-Za-z0-9_][A-Za-z0-9._/+-]*$/.test(value)) {
    refuse("must be a branch or tag name (letters, digits and '._/+-', not starting with '-' or '.')");
  }
  if (/\.\.|\/\/|\/\.|@\{|\.lock(?:\/|$)|[./]$/.test(value)) refuse('is not a valid git branch or tag name');
  return value;
}

export interface GitRemote {
  /** What git is given: the URL without any userinfo secret. */
  url: string;
  /** HTTP(S) credentials taken out of the URL, handed to git through its environment. */
  credentials?: { username: string; password: string };
  /** The URL as an operator may see it: no password, no token. */
  display: string;
  kind: 'local' | 'http' | 'ssh';
}

const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*|\[[0-9A-Fa-f:.]+\])$/;
const REMOTE_PATH = /^[A-Za-z0-9._~/+-]*$/;
const SSH_USER = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$/;

/**
 * A git remote: an absolute local path, `file://`, `http(s)://`, `ssh://` or scp-like
 * `user@host:path`. Userinfo of an HTTP(S) URL is split off so that it never reaches argv, a
 * file or a message; a password in an SSH URL is refused (keys only).
 */
export function parseGitRemote(value: string): GitRemote {
  capLength(value, MAX_URL_LENGTH);
  if (CONTROL.test(value) || /[\s"'`\\]/.test(value)) refuse('must not contain spaces, quotes, backslashes or control characters');
  if (value.startsWith('-')) refuse("must not start with '-'");
  if (value.startsWith('/')) {
    if (!REMOTE_PATH.test(value)) refuse('is not a usable path');
    return { url: value, display: value, kind: 'local' };
  }
  const scp = /^(?:([^@/:]+)@)?([^@/:[\]]+|\[[^\]]+\]):(?!\/\/)(.*)$/.exec(value);
  if (!value.includes('://') && scp) {
    const [, user, host = '', repoPath = ''] = scp;
    if (user !== undefined && !SSH_USER.test(user)) refuse('has an invalid SSH user');
    if (!HOST.test(host)) refuse('has an invalid host');
    if (!REMOTE_PATH.test(repoPath) || repoPath.startsWith('-')) refuse('has an invalid repository path');
    return { url: value, display: value, kind: 'ssh' };
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return refuse('is not a URL, an scp-like user@host:path or an absolute path');
  }
  if (url.search || url.hash) refuse('must not have a query or fragment');
  if (!REMOTE_PATH.test(decodeURIComponent(url.pathname))) refuse('has an invalid repository path');
  switch (url.protocol) {
    case 'file:':
      if (url.host) refuse('file:// URLs must not name a host');
      return { url: value, display: value, kind: 'local' };
    case 'ssh:':
      if (!HOST.test(url.hostname)) refuse('has an invalid host');
      if (url.password) refuse('must not carry a password (SSH repositories use ssh-private-key)');
      if (url.username && !SSH_USER.test(decodeURIComponent(url.username))) refuse('has an invalid SSH user');
      return { url: value, display: value, kind: 'ssh' };
    case 'http:':
    case 'https:': {
      if (!HOST.test(url.hostname)) refuse('has an invalid host');
      const credentials = url.username || url.password
        ? { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) }
        : undefined;
      url.username = '';
      url.password = '';
      const clean = url.toString();
      return { url: clean, display: credentials ? clean.replace('://', '://***@') : clean, kind: 'http', ...(credentials ? { credentials } : {}) };
    }
    default:
      return refuse('must use https://, http://, ssh://, file:// or user@host:path');
  }
}

/**
 * The Testflinger server's base URL. It reaches a program file's environment, so only a plain
 * scheme, host, port and path are allowed: nothing supervisord or a shell would read specially.
 */
export function checkServerUrl(value: string): string {
  capLength(value, MAX_URL_LENGTH);
  if (CONTROL.test(value) || SPECIAL.test(value)) refuse('must be a plain http:// or https:// URL (no spaces, quotes, % or other special characters)');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return refuse('must be a URL starting with http:// or https://');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') refuse('must be a URL starting with http:// or https://');
  if (url.username || url.password) refuse('must not carry credentials (use credentials-secret)');
  if (url.search || url.hash) refuse('must not have a query or fragment');
  if (!HOST.test(url.hostname)) refuse('has an invalid host');
  if (!/^\/[A-Za-z0-9._/-]*$/.test(url.pathname)) refuse('has an invalid path');
  return value.replace(/\/+$/, '');
}

/** Free text that may hold newlines and tabs but no other control character, with a cap. */
export function checkText(value: string, max: number): string {
  capLength(value, max);
  if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(value)) refuse('must not contain control characters');
  return value;
}

/**
 * `known_hosts` lines for the config repo's host: `[marker] hosts keytype key [comment]`, checked
 * line by line in linear time.
 */
export function checkKnownHosts(value: string): string {
  checkText(value, 64 * 1024);
  const lines = value.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  for (const [i, line] of lines.entries()) {
    const fields = line.split(/[ \t]+/);
    if (fields[0]?.startsWith('@')) fields.shift();
    const [hosts = '', type = '', key = ''] = fields;
    if (!/^[A-Za-z0-9.*?![\]:,|=+/_-]+$/.test(hosts) || !KEY_TYPE.test(type) || !BASE64_BODY.test(key)) {
      refuse(`line ${i + 1} is not a known_hosts entry (hosts keytype base64-key)`);
    }
  }
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

export const KEY_TYPE = /^(?:ssh-(?:rsa|ed25519|dss)|ecdsa-sha2-nistp(?:256|384|521)|sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com|rsa-sha2-(?:256|512))$/;
export const BASE64_BODY = /^[A-Za-z0-9+/]+={0,3}$/;

/** Shortens text for a status line or a log: an operator's status must stay readable. */
export function elide(text: string, max: number): string {
  const flat = text.replace(/[\u0000-\u001f\u007f]+/g, ' ');
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

/** The charm's messages quote untrusted text as every other part of the project does. */
export { quoted } from '../common/text';
