/** The phase scripts (tf-setup … tf-cleanup) that agent confs name as their phase commands. */
import * as path from 'node:path';
import { PHASES } from '../agent/config';
import { writeFileAtomic } from '../common/fsutil';
import type { HostPaths } from './paths';
import type { TemplateRenderer } from './templates';

export const PHASE_SCRIPT_TEMPLATE = 'tf-cmd-scripts/tf-phase.sh.hbs';

export function phaseScriptName(phase: string): string {
  return `tf-${phase.replace(/_/g, '-')}`;
}

/** The phase scripts as they should be: script name → content. */
export function phaseScripts(renderer: TemplateRenderer, paths: HostPaths, configDir: string): Map<string, string> {
  const scripts = new Map<string, string>();
  for (const phase of PHASES) {
    const content = renderer.render(PHASE_SCRIPT_TEMPLATE, {
      phase,
      agentsRoot: path.join(paths.configsDir, configDir),
      connectorProgram: paths.connectorProgram,
    });
    scripts.set(phaseScriptName(phase), content);
  }
  return scripts;
}

/** Writes the scripts into the bin dir (0775); returns the names it changed. */
export function writePhaseScripts(paths: HostPaths, scripts: ReadonlyMap<string, string>): string[] {
  return [...scripts].filter(([name, content]) => writeFileAtomic(path.join(paths.binDir, name), content, 0o775)).map(([name]) => name);
}

export function renderPhaseScripts(renderer: TemplateRenderer, paths: HostPaths, configDir: string): string[] {
  return writePhaseScripts(paths, phaseScripts(renderer, paths, configDir));
}
