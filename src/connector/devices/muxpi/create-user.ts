/**
 * create_user: the card's partitions are mounted on the control host, the image's type told
 * from what they hold, and that type's seed written (./seeding.ts). Any failure here fails the
 * job as upstream's "Error creating user files".
 */
import * as path from 'node:path';
import type { PhaseContext } from '../../phases';
import { shellWords } from '../../steps';
import type { MuxpiConfig } from './config';
import type { ControlHost } from './control';
import { ProvisioningError } from './errors';
import { detectImageType, osReleaseMajor, type ImageProbe } from './imagetype';
import { seedPlan, type SeedStep } from './seeding';
import { withMountedCard } from './storage';

/** Small files only are read back (an os-release, a .disk/info). */
const READ_CAP_BYTES = 4096;

function probeUnder(control: ControlHost, mount: string): ImageProbe {
  const at = (relative: string) => shellWords([path.posix.join(mount, relative)]);
  return {
    read: async (relative) => {
      const result = await control.attempt(`head -c ${READ_CAP_BYTES} ${at(relative)}`);
      return result.exitCode === 0 ? result.output : undefined;
    },
    exists: (relative) => control.succeeds(`test -e ${at(relative)}`),
    // The glob's own characters stay unquoted so that the control host's shell expands them.
    matchesDir: (glob) => control.succeeds(`ls -d ${shellWords([mount])}/${glob} >/dev/null 2>&1`),
  };
}

async function runStep(control: ControlHost, step: SeedStep): Promise<void> {
  switch (step.kind) {
    case 'mkdir':
      await control.run(`sudo mkdir -p ${shellWords([step.path])}`);
      return;
    case 'write':
      await control.writeFile(step.path, step.content);
      return;
    case 'remove-fake-cloud-cfg':
      await control.run(`sudo rm -f ${shellWords([step.dir])}/99-fake?cloud.cfg`);
      return;
    case 'grub-timeouts':
      await control.run(`sudo sed -i 's/timeout=[0-9]*/timeout=0/g' ${shellWords([path.posix.join(step.root, 'boot/grub/grub.cfg')])}`);
      await control.run(`grep -rl 'GRUB_TIMEOUT=' ${shellWords([path.posix.join(step.root, 'etc/default')])} | xargs -r sudo sed -i 's/GRUB_TIMEOUT=[0-9]*/GRUB_TIMEOUT=0/g'`);
      return;
    case 'copy':
      await control.run(`sudo mkdir -p ${shellWords([step.toDir])} && sudo cp -a ${shellWords([step.from, step.toDir])}`);
      return;
  }
}

export async function seedTestUser(ctx: PhaseContext, config: MuxpiConfig, control: ControlHost, device: string): Promise<void> {
  const mount = path.posix.join(config.muxpi_mount_dir, config.agent_name);
  try {
    await withMountedCard(ctx, control, device, mount, async () => {
      const probe = probeUnder(control, mount);
      const type = await detectImageType(probe);
      ctx.print(`Image type detected: ${type}`);
      ctx.print('Creating Test User');
      const major = type === 'pi-desktop' ? osReleaseMajor((await probe.read('writable/etc/os-release')) ?? '') : Number.NaN;
      for (const step of seedPlan(type, mount, major)) await runStep(control, step);
    });
  } catch (error) {
    throw new ProvisioningError(`Error creating user files: ${(error as Error).message}`, { cause: error });
  }
}
