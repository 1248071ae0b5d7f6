/** simple-git with the environment this project sets on purpose (no prompts, our SSH key). */
import { simpleGit, type SimpleGit } from 'simple-git';

const ALLOWED_GIT_ENV = ['GIT_TERMINAL_PROMPT', 'GIT_SSH_COMMAND'];

export function gitClient(env: Record<string, string>, baseDir?: string): SimpleGit {
  return simpleGit({
    ...(baseDir ? { baseDir } : {}),
    config: [],
    allowEnvironment: ALLOWED_GIT_ENV,
    unsafe: { allowUnsafeSshCommand: true },
  }).env(env);
}
