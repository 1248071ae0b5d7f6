/**
 * Pins: an agent whose device is wired to one machine (serial, USB, SD-mux) names that machine in
 * a `placement.yaml` beside its testflinger-agent.conf:
 *
 *   host: lab-host-2
 *
 * `host` is the unit's hostname, as `hostname` prints it: lowercase letters, digits and hyphens,
 * in dot-separated labels. Nothing else is allowed in the file. A pin that cannot be read names
 * the agent and the key, and concerns that agent alone. Upstream Testflinger has no such file:
 * one agent host runs every agent it is given; this is the charm's own.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { readFileNoFollow } from '../common/fsutil';
import { AGENT_CONF } from './agents';
import type { CatalogAgent } from './placement';
import { quoted, SAFE_NAME } from './values';

export const PLACEMENT_FILE = 'placement.yaml';
/** A pin is one line; anything near this is not a pin. */
const MAX_PLACEMENT_BYTES = 4096;
/** RFC 1123 labels, lowercase only (a hostname is compared as written, never folded). */
export const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

const pinSchema = z.object({ host: z.string().regex(HOSTNAME, 'must be a hostname: lowercase letters, digits and hyphens, in dot-separated labels') }).strict();

/** The pin in the agent's directory: its host, none, or why it cannot be read. */
export function readPin(agentDir: string): { pin?: string; pinProblem?: string } {
  const file = path.join(agentDir, PLACEMENT_FILE);
  if (!fs.lstatSync(file, { throwIfNoEntry: false })) return {};
  let doc: unknown;
  try {
    doc = parseYaml(readFileNoFollow(file, MAX_PLACEMENT_BYTES).toString('utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { pinProblem: `${PLACEMENT_FILE}: ${code === 'ELOOP' ? 'is a link; it must be a regular file' : 'unreadable or not YAML'}` };
  }
  const parsed = pinSchema.safeParse(doc);
  if (parsed.success) return { pin: parsed.data.host };
  const problems = parsed.error.issues.map((issue) =>
    issue.code === 'unrecognized_keys' ? `${issue.keys.map((k) => quoted(k, 40)).join(', ')}: not a key of ${PLACEMENT_FILE} (only host)` : `${issue.path.join('.') || 'host'}: ${issue.message}`,
  );
  return { pinProblem: `${PLACEMENT_FILE}: ${problems.join('; ')}` };
}

/**
 * Every agent directory of the checkout (a directory, not a link, with a conf and a safe name),
 * with its pin, sorted by name. Whether its conf is valid is the unit's business that runs it.
 */
export function readCatalog(agentsRoot: string): CatalogAgent[] {
  const entries = fs.readdirSync(agentsRoot, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.') && SAFE_NAME.test(e.name));
  const agents: CatalogAgent[] = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const dir = path.join(agentsRoot, entry.name);
    if (!fs.lstatSync(path.join(dir, AGENT_CONF), { throwIfNoEntry: false })) continue;
    agents.push({ name: entry.name, ...readPin(dir) });
  }
  return agents;
}
