/**
 * One system user per agent, all in one group (docs/isolation.md, "One system user per agent"):
 * the names are pure functions of the agent's name; reading /etc/passwd and /etc/group tells
 * which exist; useradd, groupadd and usermod make and lock them (real units only).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { Runner } from '../common/exec';
import type { FileOwner } from '../common/privileges';
import { SAFE_NAME } from './values';

/** Every agent user's group: it may read the lab key and the config checkouts and run the charm's bwrap. */
export const AGENTS_GROUP = 'testflinger-agents';
/** useradd's limit on a user name (LOGIN_NAME_MAX less one on Linux). */
const MAX_USER_NAME = 32;
const PREFIX = 'tf-';
/** A long name keeps this much of itself and adds a hash, so two long names never share a user. */
const KEPT_OF_LONG_NAME = 20;

/** The agent's user: `tf-<name>`, or `tf-<first 20>-<8 hex of sha256(name)>` when that is too long. */
export function agentUserName(agent: string): string {
  if (!SAFE_NAME.test(agent)) throw new Error('not a safe agent name');
  const whole = `${PREFIX}${agent}`;
  if (whole.length <= MAX_USER_NAME) return whole;
  const hash = createHash('sha256').update(agent).digest('hex').slice(0, 8);
  return `${PREFIX}${agent.slice(0, KEPT_OF_LONG_NAME)}-${hash}`;
}

/** The lines of a passwd, group or shadow file, split on `:`; none when it is missing. */
function readColonFile(file: string): string[][] {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').map((line) => line.split(':'));
  } catch {
    return [];
  }
}

/** Name → ids of the entries of a passwd or group file (`name:x:id:...`); none when it is missing. */
export function readIdFile(file: string): Map<string, FileOwner> {
  const entries = new Map<string, FileOwner>();
  for (const [name = '', , id = '', gid = id] of readColonFile(file)) {
    if (name && /^\d+$/.test(id)) entries.set(name, { uid: Number(id), gid: Number(gid) });
  }
  return entries;
}

/** The agents' group, made when missing; returns its gid. */
export async function ensureAgentsGroup(run: Runner, groupFile = '/etc/group'): Promise<number> {
  const existing = readIdFile(groupFile).get(AGENTS_GROUP);
  if (existing) return existing.uid;
  await run('groupadd', ['--system', AGENTS_GROUP]);
  const made = readIdFile(groupFile).get(AGENTS_GROUP);
  if (!made) throw new Error(`groupadd made no ${AGENTS_GROUP} group in ${groupFile}`);
  return made.uid;
}

/** A system user with its own group, in the agents' group, with no home made for it (the charm makes it, root's). */
export async function addAgentUser(run: Runner, user: string, home: string): Promise<void> {
  await run('useradd', ['--system', '--user-group', '--groups', AGENTS_GROUP, '--no-create-home', '--home-dir', home, '--shell', '/bin/bash', '--', user]);
}

/** The account expiry (days since 1970) that marks a locked agent user: expired, so PAM refuses any login. */
const LOCKED_EXPIRY = '1';

/**
 * A removed agent's user stays (its files keep their owner) but is locked: its password (a
 * system user's is locked already) and its account, expired, so no PAM login (su, ssh, cron) works;
 * and it leaves the agents' group, so what is left of it reads no lab key and no config checkout.
 */
export async function lockAgentUser(run: Runner, user: string): Promise<void> {
  await run('usermod', ['--lock', '--expiredate', LOCKED_EXPIRY, '--groups', '', '--', user]);
}

/** An agent that came back gets its user again: the account no longer expired, back in the agents' group. */
export async function unlockAgentUser(run: Runner, user: string): Promise<void> {
  await run('usermod', ['--expiredate', '', '--append', '--groups', AGENTS_GROUP, '--', user]);
}

/** The users a shadow file marks locked (expired as lockAgentUser does). */
export function readLockedUsers(shadowFile: string): Set<string> {
  return new Set(readColonFile(shadowFile).filter((fields) => fields[7] === LOCKED_EXPIRY && fields[0]).map((fields) => fields[0] as string));
}

/** The users on the host, and which of them are locked. */
export interface HostUsers {
  readonly all: ReadonlySet<string>;
  readonly locked: ReadonlySet<string>;
  /** User → the agent it was made for (its home is that agent's); a user not listed is no agent's. */
  readonly owners?: ReadonlyMap<string, string>;
}

/**
 * The host's users, and for each made for an agent (home `<homesDir>/<agent>`, as addAgentUser
 * gives it) that agent: a user is never taken over by another agent whose name maps to it.
 */
export function readHostUsers(passwdFile: string, shadowFile: string, homesDir: string): HostUsers {
  const owners = new Map<string, string>();
  for (const [user = '', , , , , home = ''] of readColonFile(passwdFile)) {
    const agent = home.startsWith(`${homesDir}/`) ? home.slice(homesDir.length + 1) : '';
    if (user && SAFE_NAME.test(agent)) owners.set(user, agent);
  }
  return { all: new Set(readIdFile(passwdFile).keys()), locked: readLockedUsers(shadowFile), owners };
}

/**
 * Which agent each user is for, in this charm process: two agents whose names map to one user (a
 * long name's hash is short, so a pair can be crafted) never share it. The first to claim a user
 * keeps it (agents are rendered in name order, and an existing user keeps the agent it was made
 * for); the other is refused, naming it. A user that exists but was made for another agent, or
 * for none, is never taken over: its files stay that agent's.
 */
export class AgentUserClaims {
  private readonly claimed = new Map<string, string>();
  constructor(private readonly hostUsers: () => HostUsers) {}

  /** The agent's user; throws, saying why, when it is another agent's. */
  claim(agent: string): string {
    const user = agentUserName(agent);
    const holder = this.claimed.get(user) ?? this.existingOwner(user);
    if (holder !== undefined && holder !== agent) {
      throw new Error(holder === '' ? `its user ${user} exists and is no agent's user` : `its user ${user} is agent ${JSON.stringify(holder)}'s; rename one of the directories`);
    }
    this.claimed.set(user, agent);
    return user;
  }

  /** The agent an existing user was made for, '' for a user made for none; undefined when there is no such user. */
  private existingOwner(user: string): string | undefined {
    const users = this.hostUsers();
    if (!users.all.has(user)) return undefined;
    return users.owners?.get(user) ?? '';
  }
}
