/** A device that is not there, for local runs: every phase says what it would do and succeeds. */
import type { PhaseContext, PhaseFn } from '../phases';
import { writeDeviceInfo } from '../phases';
import { quoted } from '../../common/text';
import type { DeviceType } from './types';

function pretend(what: (ctx: PhaseContext) => string): PhaseFn {
  return async (ctx) => {
    ctx.print(`[fake device ${ctx.device.device_ip}] ${what(ctx)}`);
    return 0;
  };
}

export const fake: DeviceType = {
  name: 'fake',
  phases: {
    provision: async (ctx) => {
      const image = ctx.job.provision_data?.['distro'] ?? ctx.job.provision_data?.['url'];
      ctx.print(`[fake device ${ctx.device.device_ip}] would provision ${image === undefined ? 'the default image' : quoted(image)}`);
      writeDeviceInfo(ctx);
      return 0;
    },
    firmware_update: pretend((ctx) => `would update firmware to ${quoted(ctx.job.firmware_update_data?.['version'] ?? 'latest')}`),
    cleanup: pretend(() => 'would clean up'),
  },
};
