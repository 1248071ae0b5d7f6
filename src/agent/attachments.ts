/** Job attachments and artifacts: tar.gz in, tar.gz out, nothing written outside its folder. */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Loaded on first use: most agents sit idle, and tar costs memory in every one of them. */
function tarModule(): typeof import('tar') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('tar') as typeof import('tar');
}

/** Attachments may only land under these folders of attachments/. */
export const ATTACHMENT_PHASES = ['provision', 'firmware_update', 'test'] as const;

/** Why a member is refused, or undefined when it may be unpacked. */
export function refuseAttachmentMember(member: string, type: string): string | undefined {
  if (type === 'SymbolicLink' || type === 'Link') return 'links are not allowed';
  if (path.isAbsolute(member)) return 'absolute path';
  const normal = path.posix.normalize(member.replace(/\\/g, '/'));
  if (normal.split('/').includes('..')) return 'escapes the attachments folder';
  const top = normal.split('/')[0] ?? '';
  if (!(ATTACHMENT_PHASES as readonly string[]).includes(top)) return `not under ${ATTACHMENT_PHASES.join('/, ')}/`;
  return undefined;
}

/** setuid, setgid and sticky: an attachment must not become a privileged program on the host. */
const SPECIAL_MODE_BITS = 0o7000;

/**
 * Unpacks the archive file into <runDir>/attachments; returns the members refused, each with
 * the reason (the member name quoted, as the archive spelled it).
 */
export async function unpackAttachments(archiveFile: string, runDir: string): Promise<string[]> {
  const target = path.join(runDir, 'attachments');
  fs.mkdirSync(target, { recursive: true, mode: 0o700 });
  const refused: string[] = [];
  await tarModule().x({
    file: archiveFile,
    cwd: target,
    strict: false,
    filter: (member, entry) => {
      const type = 'type' in entry ? String(entry.type) : 'File';
      const reason = refuseAttachmentMember(member, type);
      if (reason) refused.push(`${JSON.stringify(member)}: ${reason}`);
      // The filter runs before the entry is written, so the mode it leaves is the one used.
      if (typeof entry.mode === 'number') entry.mode &= ~SPECIAL_MODE_BITS;
      return reason === undefined;
    },
  });
  return refused;
}

/** The artifacts/ folder of a run as a tar.gz, or undefined when there is none. */
export async function packArtifacts(runDir: string): Promise<Buffer | undefined> {
  if (!fs.statSync(path.join(runDir, 'artifacts'), { throwIfNoEntry: false })?.isDirectory()) return undefined;
  const chunks: Buffer[] = [];
  const stream = tarModule().c({ gzip: true, cwd: runDir, portable: true }, ['artifacts']);
  for await (const chunk of stream as unknown as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}
