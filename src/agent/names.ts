/**
 * Names that reach file paths, URLs or labels from the config repo or the server, checked where
 * they enter (the conf schema, the job reply): anything else is refused, never escaped.
 */

/**
 * An agent's id: it names its offline marker in /tmp and, on a unit, its state and the charm's
 * actions' paths. One path segment: letters, digits, `.`, `_`, `-`; never `..`.
 */
export const AGENT_ID_PATTERN = /^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const AGENT_ID_RULE = 'must be letters, digits, . _ - (at most 64, starting with a letter or digit, no "..")';

/**
 * A queue name: upstream sets no rule, so this one only keeps out what no lab uses (spaces,
 * slashes, control characters) and bounds the length.
 */
export const QUEUE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:+@-]{0,127}$/;
export const QUEUE_NAME_RULE = 'must be letters, digits, . _ : + @ - (at most 128, starting with a letter or digit)';

export const isAgentId = (name: string): boolean => AGENT_ID_PATTERN.test(name);
