/**
 * Values from a job or a device config that end up in a command line or a URL. Each is checked
 * against a strict pattern and refused when it does not match: nothing is escaped, so a value
 * that reaches ssh can never be read as one of its options.
 */
import * as net from 'node:net';
import { z } from 'zod';
import { quoted } from '../common/text';

/** A string schema that refuses what `accepts` rejects, with a message quoting the value. */
export function checkedString(accepts: (value: string) => boolean, what: string) {
  return z.string().superRefine((value, ctx) => {
    if (!accepts(value)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${quoted(value)} is not ${what}` });
  });
}

/** Login names: letters, digits, '_', '.', '-', never a leading '-' (ssh would read an option). */
const USER_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;

export function isSshUser(value: string): boolean {
  return USER_NAME.test(value);
}

/** DNS names, plus '_' in labels because ssh config Host aliases use it. */
const DNS_LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
const MAX_HOST = 253;

function isDnsName(value: string): boolean {
  const labels = value.endsWith('.') ? value.slice(0, -1).split('.') : value.split('.');
  return labels.every((label) => DNS_LABEL.test(label));
}

/** An IPv6 address without brackets, as ssh takes it; a zone (`%eth0`) is allowed. */
function isBracketlessIpv6(value: string): boolean {
  const [address, zone, ...more] = value.split('%');
  if (more.length > 0 || (zone !== undefined && !/^[A-Za-z0-9_.-]{1,32}$/.test(zone))) return false;
  return net.isIPv6(address ?? '');
}

export function isSshHost(value: string): boolean {
  if (value.length === 0 || value.length > MAX_HOST) return false;
  return net.isIPv4(value) || isBracketlessIpv6(value) || isDnsName(value);
}

export const sshUserSchema = checkedString(isSshUser, 'a user name (letters, digits, "_", ".", "-"; not starting with "-" or a digit; at most 32)').brand<'SshUser'>();
export type SshUser = z.output<typeof sshUserSchema>;

export const sshHostSchema = checkedString(isSshHost, `a host (an IPv4 or IPv6 address without brackets, or a DNS name of at most ${MAX_HOST} characters)`).brand<'SshHost'>();
export type SshHost = z.output<typeof sshHostSchema>;

export const sshPortSchema = z.number().int().min(1).max(65535);

/** Environment variable names as the shell takes them; a '=' or NUL in a name would corrupt the environment. */
export const envNameSchema = checkedString((name) => /^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(name), 'an environment variable name');

/** Environment values: anything but NUL, which no environment can hold. */
export const envValueSchema = checkedString((value) => !value.includes('\0'), 'an environment value (it holds a NUL)');

/** A string schema for values matching `pattern` (anchored), e.g. a MAAS profile name, refused with `what`. */
export function patternString(pattern: RegExp, what: string) {
  return checkedString((value) => pattern.test(value), what);
}
