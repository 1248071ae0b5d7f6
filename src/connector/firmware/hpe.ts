/**
 * HPE servers, as upstream updates them: through the BMC (iLO) with ilorest on this host, the
 * BMC's address and credentials from MAAS (`maas <maas_user> node power-parameters <node_id>`).
 * The firmware inventory is read from the BMC, the packages of the firmware pack asked for
 * (`latest`: the newest) are matched to its components, those whose version differs are
 * downloaded and flashed (`flashfwpkg --forceupload`), the server is rebooted through the BMC
 * until its POST finishes and it answers over SSH, and the inventory must then show the new versions.
 */
import * as fs from 'node:fs';
import { isIP } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { quoted } from '../../common/text';
import type { PhaseContext } from '../phases';
import { pollUntil, runCommand, waitForSsh } from '../steps';
import { testUsername } from '../phases';
import { firmwareConfig, LATEST, type FirmwareConfig } from './config';
import { FirmwareUpdateError } from './error';
import { compareVersions, HpeRepo, isPackName, plainVersion, type FirmwarePackage } from './hpe-repo';
import { Ilorest, type Bmc } from './ilorest';

/** Upstream's waits: 1800 s for the server's reboot, 300 s for the BMC to serve Redfish, 60 polls after a BMC's own reboot. */
const HPE_REBOOT_SECONDS = 1800;
const BMC_READY_SECONDS = 300;
const BMC_REBOOT_POLLS = 60;
const FLASH_TIMEOUT_MS = 1_200_000;
const MAAS_TIMEOUT_MS = 120_000;
/** Upstream flashes these first, in this order; then the rest. */
const FLASH_FIRST = ['system rom', 'server platform services', 'innovation engine', 'ilo'];

const powerParametersSchema = z.object({ power_address: z.string(), power_user: z.string(), power_pass: z.string() }).passthrough();
const inventorySchema = z.object({
  Members: z.array(
    z
      .object({
        Name: z.string(),
        Version: z.string(),
        Oem: z.object({ Hpe: z.object({ DeviceClass: z.string().nullish(), Targets: z.array(z.string()).nullish() }).passthrough() }).passthrough(),
      })
      .passthrough(),
  ),
});
type Component = z.output<typeof inventorySchema>['Members'][number];
const systemInfoSchema = z.object({ system: z.object({ Model: z.string() }).passthrough() });

/** A component to flash and the package that carries its new firmware. */
interface Flash {
  component: Component;
  pkg: FirmwarePackage;
}

function say(ctx: PhaseContext, line: string): void {
  ctx.print(`firmware: ${line}`);
}

function parsed<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, text: string, what: string): T {
  try {
    const result = schema.safeParse(JSON.parse(text));
    if (result.success) return result.data;
  } catch {
    // reported below
  }
  throw new FirmwareUpdateError(`${what} is not what ilorest prints`);
}

/** The BMC's address and credentials from MAAS's power parameters; the answer (it holds the password) is never printed. */
async function readBmc(config: FirmwareConfig): Promise<Bmc> {
  const { maas_user: profile, node_id: node } = config;
  if (profile === undefined || node === undefined) throw new FirmwareUpdateError("MAAS info isn't provided (the device config's maas_user and node_id, as upstream)");
  const words = ['maas', profile, 'node', 'power-parameters', node];
  const result = await runCommand(words, { timeoutMs: MAAS_TIMEOUT_MS });
  if (result.exitCode !== 0) throw new FirmwareUpdateError(`maas error running: ${words.join(' ')} (exit ${result.exitCode})`);
  let answer: unknown;
  try {
    answer = JSON.parse(result.stdout);
  } catch {
    throw new FirmwareUpdateError(`${words.join(' ')} printed no JSON`);
  }
  const bmc = powerParametersSchema.safeParse(answer);
  if (!bmc.success) throw new FirmwareUpdateError("MAAS info isn't provided (no power_address, power_user and power_pass in the machine's power parameters)");
  if (isIP(bmc.data.power_address) === 0) throw new FirmwareUpdateError('BMC IP address is not valid');
  // A value that starts with "-" would be read by ilorest as an option.
  if (/^-/.test(bmc.data.power_user) || /^-/.test(bmc.data.power_pass)) throw new FirmwareUpdateError('the BMC user or password from MAAS starts with "-", which ilorest would read as an option');
  return { address: bmc.data.power_address, user: bmc.data.power_user, password: bmc.data.power_pass };
}

/** Upstream's order: its named components first, then the rest as the BMC lists them. */
function flashRank(component: Component): number {
  const name = component.Name.toLowerCase();
  const rank = FLASH_FIRST.findIndex((first) => name.includes(first));
  return rank < 0 ? FLASH_FIRST.length : rank;
}

/** The newest package of the pack for the component: one of its targets and its device class. */
function packageFor(component: Component, packages: readonly FirmwarePackage[]): FirmwarePackage | undefined {
  const { Targets: targets, DeviceClass: deviceClass } = component.Oem.Hpe;
  if (!targets || targets.length === 0) return undefined;
  return packages
    .filter((pkg) => pkg.targets.some((target) => targets.includes(target)) && (deviceClass == null || pkg.deviceClass === deviceClass))
    .reduce<FirmwarePackage | undefined>((best, pkg) => (best === undefined || compareVersions(pkg.version, best.version) > 0 ? pkg : best), undefined);
}

/** What to flash, saying why each other component with a package is left as it is. */
export function planFlashes(ctx: PhaseContext, components: readonly Component[], packages: readonly FirmwarePackage[]): Flash[] {
  const plan: Flash[] = [];
  for (const component of [...components].sort((a, b) => flashRank(a) - flashRank(b))) {
    const pkg = packageFor(component, packages);
    const name = `[${component.Name}]`;
    if (!pkg) continue;
    if (plainVersion(component.Version) === plainVersion(pkg.version)) say(ctx, `${name} no update is needed, already ${quoted(component.Version)}`);
    else if (pkg.minimumVersion !== undefined && compareVersions(component.Version, pkg.minimumVersion) < 0) {
      say(ctx, `${name} current firmware ${quoted(component.Version)} does not meet the minimum active version ${quoted(pkg.minimumVersion)} of ${pkg.file}: skipped`);
    } else {
      say(ctx, `${name} flash current firmware ${quoted(component.Version)} to ${quoted(pkg.version)} (${pkg.file})`);
      plan.push({ component, pkg });
    }
  }
  return plan;
}

class HpeServer {
  private readonly ilo: Ilorest;
  private readonly rebootSeconds: number;

  constructor(
    private readonly ctx: PhaseContext,
    private readonly config: FirmwareConfig,
    bmc: Bmc,
    private readonly workDir: string,
  ) {
    this.ilo = new Ilorest(bmc, workDir);
    this.rebootSeconds = config.firmware_reboot_timeout_seconds ?? HPE_REBOOT_SECONDS;
  }

  private poll<T>(read: () => Promise<T>, done: (value: T) => boolean, seconds: number) {
    return pollUntil(this.ctx, read, done, { seconds, everySeconds: this.config.firmware_poll_seconds });
  }

  /** ilorest must be installed on this host; upstream pip-installs it (5.3.0.0) where it is missing. */
  private async checkIlorest(): Promise<void> {
    const result = await this.ilo.run(['--version']);
    if (result.exitCode !== 0) throw new FirmwareUpdateError(`ilorest is not installed on this host (${quoted(result.output.trim())}); upstream pip-installs ilorest 5.3.0.0 there`);
    say(this.ctx, `ilorest: ${quoted(result.stdout.trim())}`);
  }

  private async inventory(): Promise<Component[]> {
    const text = await this.ilo.must(['rawget', '/redfish/v1/UpdateService/FirmwareInventory/', '--expand', '--silent']);
    return parsed(inventorySchema, text, 'the BMC firmware inventory').Members;
  }

  private async model(): Promise<string> {
    return parsed(systemInfoSchema, await this.ilo.must(['systeminfo', '--system', '--json']), 'the system information').system.Model;
  }

  /** The pack to flash: the newest for `latest`, else the one named, which the repository must list. */
  private async choosePack(repo: HpeRepo, version: string): Promise<string> {
    const packs = await repo.packs();
    say(this.ctx, `firmware packs in ${repo.url}: ${packs.join(', ')}`);
    const pack = version === LATEST ? packs[0] : version;
    if (pack === undefined || !packs.includes(pack)) throw new FirmwareUpdateError(`SPP ${quoted(pack ?? null)} is not available in HPE FW repository (${repo.url})`);
    return pack;
  }

  /** As upstream: a task left in the BMC's queue can block a flash, so the queue is cleared first. */
  private async clearTaskQueue(): Promise<void> {
    const empty = async () => (await this.ilo.run(['taskqueue'])).stdout.includes('No tasks found');
    if (await empty()) return;
    await this.ilo.must(['taskqueue', '-c']);
    if (!(await empty())) say(this.ctx, 'tasks are still in the BMC task queue; they may get in the way of the flash');
  }

  /** Flashes one package (a failure is printed; the results after the reboot decide); waits for the BMC when it reboots itself. */
  private async flash(file: string): Promise<void> {
    await this.ilo.login();
    say(this.ctx, `flashing ${path.basename(file)}`);
    const result = await this.ilo.run(['flashfwpkg', '--forceupload', file], FLASH_TIMEOUT_MS);
    const output = result.stdout.replace(/Updating: .\r/g, '').trim();
    say(this.ctx, `${path.basename(file)}: ${result.exitCode === 0 ? 'flashed' : `the flash failed (exit ${result.exitCode})`}: ${quoted(output)}`);
    if (!output.toLowerCase().includes('ilo will reboot')) return;
    say(this.ctx, 'waiting for the BMC to come back from its reboot');
    await this.poll(() => this.ilo.tryLogin(), (answered) => answered, BMC_REBOOT_POLLS * this.config.firmware_poll_seconds);
  }

  /** Reboots the server through the BMC, once it serves Redfish, and waits for its POST to finish and SSH to answer. */
  private async reboot(): Promise<void> {
    const ready = await this.poll(
      async () => {
        await this.ilo.login();
        const types = await this.ilo.must(['types']);
        if (!types.includes('ComputerSystem')) await this.ilo.logout();
        return types.includes('ComputerSystem');
      },
      (served) => served,
      BMC_READY_SECONDS,
    );
    if (!ready.done) say(this.ctx, `the BMC does not list ComputerSystem after ${BMC_READY_SECONDS}s; rebooting anyway, as upstream`);
    say(this.ctx, 'rebooting the server through its BMC');
    await this.ilo.must(['reboot']);
    const posted = await this.poll(() => this.postFinished(), (finished) => finished, this.rebootSeconds);
    if (!posted.done) throw new FirmwareUpdateError(`HPE machine failed to reach FinishedPost after ${this.rebootSeconds}s`);
    try {
      await waitForSsh(this.ctx, testUsername(this.ctx), { seconds: this.rebootSeconds, everySeconds: this.config.firmware_poll_seconds });
    } catch (error) {
      throw new FirmwareUpdateError((error as Error).message);
    }
  }

  private async postFinished(): Promise<boolean> {
    if (!(await this.ilo.tryLogin())) return false;
    await this.ilo.run(['select', 'ComputerSystem', '--refresh']);
    const state = await this.ilo.run(['get', 'Oem/Hpe/PostState', '--json'], 10_000);
    await this.ilo.run(['logout']);
    return state.exitCode === 0 && state.stdout.includes('FinishedPost');
  }

  /** The inventory after the reboot must show each flashed component at its package's version. */
  private async flashesLanded(plan: readonly Flash[]): Promise<boolean> {
    await this.ilo.login();
    const now = await this.inventory();
    let landed = true;
    for (const { component, pkg } of plan) {
      const after = now.find((found) => found.Name === component.Name);
      if (after && plainVersion(after.Version) === plainVersion(pkg.version)) say(this.ctx, `[${component.Name}] firmware flashed: ${quoted(component.Version)} -> ${quoted(after.Version)}`);
      else {
        say(this.ctx, `[${component.Name}] firmware update failed: ${quoted(after?.Version ?? 'not in the inventory')}, not ${quoted(pkg.version)}`);
        landed = false;
      }
    }
    await this.ilo.logout();
    return landed;
  }

  async update(version: string): Promise<void> {
    await this.checkIlorest();
    await this.ilo.login();
    const components = await this.inventory();
    const repo = HpeRepo.forModel(this.ctx, this.config.firmware_hpe_repo_url, await this.model(), this.workDir);
    const pack = await this.choosePack(repo, version);
    say(this.ctx, `flashing the firmware of pack ${pack}`);
    const plan = planFlashes(this.ctx, components, await repo.packages(pack));
    if (plan.length === 0) return say(this.ctx, 'nothing to flash: no reboot');
    const files: string[] = [];
    for (const { pkg } of plan) files.push(await repo.download(pack, pkg.file));
    await this.clearTaskQueue();
    for (const file of files) await this.flash(file);
    await this.reboot();
    if (!(await this.flashesLanded(plan))) throw new FirmwareUpdateError('the firmware version did not update successfully');
  }
}

/** The HPE route: `latest` or a firmware pack's version (upstream's SPP, e.g. 2024.09.00.00). */
export async function updateHpeServer(ctx: PhaseContext, version: string | undefined): Promise<void> {
  if (version === undefined || (version !== LATEST && !isPackName(version))) {
    throw new FirmwareUpdateError(`firmware_update_data.version ${quoted(version ?? null)}: an HPE server takes "latest" or a firmware pack's version (2024.09.00.00)`);
  }
  const config = firmwareConfig(ctx.device);
  const bmc = await readBmc(config);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tf-hpe-'));
  try {
    await new HpeServer(ctx, config, bmc, workDir).update(version);
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}
