/** What a charm declares in config.yaml, actions.yaml and metadata.yaml, as the fake Juju reads it. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';

export interface ConfigOption {
  type: 'string' | 'int' | 'float' | 'boolean' | 'secret';
  default?: unknown;
}

export interface ActionSpec {
  params?: Record<string, { type?: string }>;
  required?: string[];
  additionalProperties?: boolean;
}

export interface EndpointSpec {
  interface: string;
  limit?: number;
}

export interface CharmSpec {
  /** metadata.yaml's `name`: the application a unit of the charm belongs to by default. */
  name: string | undefined;
  config: Record<string, ConfigOption>;
  actions: Record<string, ActionSpec>;
  /** Every relation endpoint: requires, provides and peers. */
  endpoints: Record<string, EndpointSpec & { role: 'requires' | 'provides' | 'peers' }>;
}

function readYaml(file: string): unknown {
  return fs.existsSync(file) ? parseYaml(fs.readFileSync(file, 'utf8')) : undefined;
}

export function endpointsOf(metadata: unknown): CharmSpec['endpoints'] {
  const doc = (metadata ?? {}) as Partial<Record<'requires' | 'provides' | 'peers', Record<string, EndpointSpec>>>;
  const endpoints: CharmSpec['endpoints'] = {};
  for (const role of ['requires', 'provides', 'peers'] as const) {
    for (const [name, spec] of Object.entries(doc[role] ?? {})) endpoints[name] = { ...spec, role };
  }
  return endpoints;
}

export function charmNameOf(metadata: unknown): string | undefined {
  const name = (metadata as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' && name ? name : undefined;
}

/**
 * The unit a test or the emulator runs as when the caller names none: unit 0 of the charm's
 * own application, as metadata.yaml names the charm.
 */
export function defaultUnitName(spec: Pick<CharmSpec, 'name'>, whose: string): string {
  if (!spec.name) throw new Error(`${whose}: no unit name given, and no metadata.yaml with a name to take it from`);
  return `${spec.name}/0`;
}

/** A file that is absent declares nothing. */
export function charmSpecFrom(charmDir: string): CharmSpec {
  const config = readYaml(path.join(charmDir, 'config.yaml')) as { options?: CharmSpec['config'] } | undefined;
  const metadata = readYaml(path.join(charmDir, 'metadata.yaml'));
  return {
    name: charmNameOf(metadata),
    config: config?.options ?? {},
    actions: (readYaml(path.join(charmDir, 'actions.yaml')) as CharmSpec['actions'] | undefined) ?? {},
    endpoints: endpointsOf(metadata),
  };
}

/** The defaults a real Juju merges into config-get; an option without one reads as unset. */
export function configDefaults(spec: Pick<CharmSpec, 'config'>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(spec.config).map(([k, v]) => [k, v.default ?? null]));
}

export function configDefaultsFrom(charmDir: string): Record<string, unknown> {
  return configDefaults(charmSpecFrom(charmDir));
}
