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

/** Renders one script per phase into the bin dir (0775); returns the names it changed. */
export function renderPhaseScripts(renderer: TemplateRenderer, paths: HostPaths, configDir: string): string[] {
  const changed: string[] = [];
  for (const phase of PHASES) {
    const content = renderer.render(PHASE_SCRIPT_TEMPLATE, {
      phase,
      agentsRoot: path.join(paths.configsDir, configDir),
      connectorProgram: paths.connectorProgram,
    });
    const name = phaseScriptName(phase);
    if (writeFileAtomic(path.join(paths.binDir, name), content, 0o775)) changed.push(name);
  }
  return changed;
}
