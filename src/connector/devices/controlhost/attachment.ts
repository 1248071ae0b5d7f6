/**
 * The provision attachment: upstream uploads the first file the job put under
 * attachments/provision/ in its run directory to the control host (a boot binary or image).
 * The job controls that tree, so nothing in it is followed: the two directories must be real
 * directories, and the file a regular file opened without following a link.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ReadableStream } from 'node:stream/web';
import { JobError } from '../../errors';
import { quoted } from '../../../common/text';

export interface Attachment {
  name: string;
  fd: number;
  size: number;
}

function realDirectory(dir: string): boolean {
  try {
    return fs.lstatSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** The first regular file (by name) in attachments/provision/, opened; none when there is none. */
export function openProvisionAttachment(runDir: string): Attachment | undefined {
  const attachments = path.join(runDir, 'attachments');
  const dir = path.join(attachments, 'provision');
  if (!realDirectory(attachments) || !realDirectory(dir)) return undefined;
  for (const name of fs.readdirSync(dir).sort()) {
    let fd: number;
    try {
      fd = fs.openSync(path.join(dir, name), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch {
      continue; // a link, or gone: not an attachment
    }
    const stat = fs.fstatSync(fd);
    if (stat.isFile()) return { name, fd, size: stat.size };
    fs.closeSync(fd);
  }
  return undefined;
}

/** A file name as a multipart header may carry it: no quotes, backslashes or control characters. */
function headerFileName(name: string): string {
  if (/["\\\x00-\x1f\x7f]/.test(name)) throw new JobError(`the provision attachment's name ${quoted(name)} cannot be sent (quotes, backslashes or control characters)`);
  return name;
}

/**
 * multipart/form-data with the fields upstream sends: `request` (the provisioning request as
 * JSON) and `boot_binary` (the file). The file is streamed from its descriptor, never buffered.
 */
export function multipartBody(request: string, attachment: Attachment): { body: ReadableStream<Uint8Array>; contentType: string } {
  const boundary = `----testflinger${Date.now().toString(16)}${Math.random().toString(16).slice(2)}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="request"\r\nContent-Type: application/json\r\n\r\n${request}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="boot_binary"; filename="${headerFileName(attachment.name)}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  async function* parts(): AsyncGenerator<Uint8Array> {
    yield head;
    for await (const chunk of fs.createReadStream('', { fd: attachment.fd, autoClose: true })) yield chunk as Buffer;
    yield tail;
  }
  const source = parts();
  // Pulled as fetch sends: backpressure keeps a large image out of memory.
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await source.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
  });
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}
