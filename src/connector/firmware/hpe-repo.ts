/**
 * HPE's firmware packs (SPPs), as upstream finds them: the server generation's folder of the
 * repository (`<repo>fwpp-gen10/`) is an HTML listing whose links name the packs (`2024.09.00.00/`);
 * each pack's `fwrepodata/fwrepo.json` maps its package files (`*.fwpkg`) to the firmware they
 * carry (target ids, device class, version), and `current/fwrepodata/fwrepo.json` fills in the
 * targets of older packs' indexes. Every name from these answers that reaches a URL, a path or a
 * command line matches a strict pattern first.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { quoted } from '../../common/text';
import type { PhaseContext } from '../phases';
import { FirmwareUpdateError } from './error';

/** Upstream's folders by server generation (the model's "Gen10" etc.). */
const GENERATION_FOLDERS: Record<string, string> = { gen10: 'fwpp-gen10/', gen11: 'fwpp-gen11/', gen12: 'fwpp-gen12/' };
const INDEX_FILE = 'fwrepodata/fwrepo.json';
/** A pack's name in the listing, as upstream matches it: a date-like version and an optional suffix. */
const PACK_IN_LISTING = /\d{4}\.\d{2}\.\d{1,2}[._]?[\w.]*/gi;
const PACK_NAME = /^\d{4}\.\d{2}\.\d{1,2}[._]?[\w.]*$/i;
const PACKAGE_FILE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.fwpkg$/;
/** Upstream tries each download three times. */
const TRIES = 3;
const PAGE_TIMEOUT_MS = 300_000;
const PACKAGE_TIMEOUT_MS = 1_800_000;
const PAGE_MAX_BYTES = 32 * 1024 * 1024;
const PACKAGE_MAX_BYTES = 2 * 1024 * 1024 * 1024;

const indexEntrySchema = z
  .object({
    target: z.union([z.array(z.string()), z.string()]).optional(),
    deviceclass: z.string().nullish(),
    version: z.string(),
    minimum_active_version: z.string().nullish(),
  })
  .passthrough();
const indexSchema = z.record(z.string(), z.unknown());

export interface FirmwarePackage {
  file: string;
  version: string;
  /** The version the component must run before this one can be flashed; none when upstream's index says "null". */
  minimumVersion: string | undefined;
  deviceClass: string | undefined;
  targets: string[];
}

export function isPackName(name: string): boolean {
  return PACK_NAME.test(name);
}

/** The pack names a listing links to, newest first. */
export function packsInListing(html: string): string[] {
  return [...new Set(html.match(PACK_IN_LISTING) ?? [])].sort().reverse();
}

function entriesOf(index: unknown): Map<string, z.output<typeof indexEntrySchema>> {
  const entries = new Map<string, z.output<typeof indexEntrySchema>>();
  const parsed = indexSchema.safeParse(index);
  if (!parsed.success) return entries;
  for (const [file, value] of Object.entries(parsed.data)) {
    const entry = indexEntrySchema.safeParse(value);
    if (entry.success) entries.set(file, entry.data);
  }
  return entries;
}

const asList = (target: string | string[] | undefined): string[] => (target === undefined ? [] : Array.isArray(target) ? target : [target]);

/** A pack's packages; an older index's single target is replaced by the current index's targets of the same file, as upstream does. */
export function packagesOf(packIndex: unknown, currentIndex: unknown): FirmwarePackage[] {
  const current = entriesOf(currentIndex);
  return [...entriesOf(packIndex)]
    .filter(([file]) => PACKAGE_FILE.test(file))
    .map(([file, entry]) => ({
      file,
      version: entry.version,
      minimumVersion: entry.minimum_active_version === 'null' ? undefined : (entry.minimum_active_version ?? undefined),
      deviceClass: entry.deviceclass ?? undefined,
      targets: Array.isArray(entry.target) || !current.has(file) ? asList(entry.target) : asList(current.get(file)?.target),
    }));
}

/** A version as numbers, as upstream compares them: "U30 v2.90 (07/20/2023)" is 2.90.7.20.2023; one with letters in it is kept as text. */
export function plainVersion(version: string): string {
  const afterV = version.split('v').at(-1) ?? '';
  const lead = (/^[^a-zA-Z]*/.exec(afterV)?.[0] ?? '').replace(/ /g, '');
  const parts = lead.replace(/[.()/_-]/g, ' ').trim().split(/ +/);
  if (parts.every((part) => /^\d+$/.test(part))) return parts.map((part) => String(Number(part))).join('.');
  return version.replace(/^\D+/, '');
}

/** Orders plain versions part by part, numerically where both parts are numbers. */
export function compareVersions(a: string, b: string): number {
  const [as, bs] = [plainVersion(a).split('.'), plainVersion(b).split('.')];
  for (let i = 0; i < Math.max(as.length, bs.length); i++) {
    const [x = '', y = ''] = [as[i], bs[i]];
    const order = /^\d+$/.test(x) && /^\d+$/.test(y) ? Number(x) - Number(y) : x.localeCompare(y);
    if (order !== 0) return Math.sign(order);
  }
  return 0;
}

async function get(url: string, timeoutMs: number): Promise<Response> {
  const errors: string[] = [];
  for (let attempt = 0; attempt < TRIES; attempt++) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      if (response.ok && response.body) return response;
      errors.push(`HTTP ${response.status}`);
    } catch (error) {
      errors.push((error as Error).message);
    }
  }
  throw new FirmwareUpdateError(`Failed to download ${url}: ${errors.join('; ')}`);
}

/** Counts the bytes going through; more than `max` fails the stream. */
function capped(max: number, url: string): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      done(seen > max ? new FirmwareUpdateError(`${url} is larger than ${max} bytes`) : null, chunk);
    },
  });
}

async function getText(url: string): Promise<string> {
  const response = await get(url, PAGE_TIMEOUT_MS);
  const chunks: Buffer[] = [];
  await pipeline(Readable.fromWeb(response.body as never), capped(PAGE_MAX_BYTES, url), async function* (source) {
    for await (const chunk of source) chunks.push(chunk as Buffer);
  });
  return Buffer.concat(chunks).toString('utf8');
}

async function getJson(url: string): Promise<unknown> {
  const text = await getText(url);
  try {
    return JSON.parse(text);
  } catch {
    throw new FirmwareUpdateError(`${url} is not JSON`);
  }
}

/** One generation's folder of HPE's firmware repository. */
export class HpeRepo {
  private constructor(
    private readonly ctx: PhaseContext,
    readonly url: string,
    /** Where packages are downloaded: the run's private directory. */
    private readonly downloadDir: string,
  ) {}

  /** The folder for the server's model ("HPE ProLiant DL380 Gen10"). */
  static forModel(ctx: PhaseContext, repoUrl: string, model: string, downloadDir: string): HpeRepo {
    const generation = Object.keys(GENERATION_FOLDERS).find((name) => model.toLowerCase().includes(name));
    if (!generation) throw new FirmwareUpdateError(`no HPE firmware repository for the model ${quoted(model)} (upstream's: ${Object.keys(GENERATION_FOLDERS).join(', ')})`);
    return new HpeRepo(ctx, `${repoUrl}${GENERATION_FOLDERS[generation]}`, downloadDir);
  }

  /** The packs the folder lists, newest first. */
  async packs(): Promise<string[]> {
    return packsInListing(await getText(this.url));
  }

  /** The pack's packages, their targets completed from the current index. */
  async packages(pack: string): Promise<FirmwarePackage[]> {
    const current = await getJson(`${this.url}current/${INDEX_FILE}`);
    return packagesOf(await getJson(`${this.url}${pack}/${INDEX_FILE}`), current);
  }

  /** Downloads a package of the pack into the private directory; returns its path. */
  async download(pack: string, file: string): Promise<string> {
    const url = `${this.url}${pack}/${file}`;
    const target = path.join(this.downloadDir, file);
    this.ctx.print(`firmware: downloading ${url}`);
    const response = await get(url, PACKAGE_TIMEOUT_MS);
    await pipeline(Readable.fromWeb(response.body as never), capped(PACKAGE_MAX_BYTES, url), fs.createWriteStream(target, { flags: 'wx', mode: 0o600 }));
    return target;
  }
}
