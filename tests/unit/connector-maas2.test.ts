/** maas2's pure parts: the network-first EFI boot order, sizes, and where a layout's disks land. */
import { maas2ProvisionSchema, sizeInBytes, storageLayoutSchema } from '../../src/connector/devices/maas2/config';
import { networkFirstBootOrder } from '../../src/connector/devices/maas2/preflight';
import { planLayout, type BlockDevice } from '../../src/connector/devices/maas2/storage';

describe('networkFirstBootOrder', () => {
  const efibootmgr = (current: string) =>
    [
      `BootCurrent: ${current}`,
      'Timeout: 1 seconds',
      'BootOrder: 0000,0002,0001,0003',
      'Boot0000* ubuntu\tHD(1,GPT,...)/File(\\EFI\\ubuntu\\shimx64.efi)',
      'Boot0001* UEFI: PXE IPv4 Intel(R) Ethernet\tPciRoot(0x0)/MAC(...)/IPv4(0.0.0.0)',
      'Boot0002* UEFI: PXE IPv6 Intel(R) Ethernet\tPciRoot(0x0)/MAC(...)/IPv6([::])',
      'Boot0003* UEFI: PXE IPv4 Realtek USB\tUsb(0x3,0x0)/MAC(...)/IPv4(0.0.0.0)',
    ].join('\n');

  it('puts the IPv4 entry booted now first, then the other IPv4 entries, then the rest in their order', () => {
    expect(networkFirstBootOrder(efibootmgr('0003'))).toEqual(['0003', '0001', '0000', '0002']);
  });
  it('when the system booted from disk, IPv4 entries still come first, in listing order', () => {
    expect(networkFirstBootOrder(efibootmgr('0000'))).toEqual(['0001', '0003', '0000', '0002']);
  });
  it('gives nothing to set when there is no BootOrder, and drops entries that are not boot numbers', () => {
    expect(networkFirstBootOrder('BootCurrent: 0001\n')).toBeUndefined();
    expect(networkFirstBootOrder('BootOrder: 0001,;reboot,0002\n')).toEqual(['0001', '0002']);
  });
});

describe('sizes', () => {
  it.each([
    ['1000', 1000],
    ['500M', 500_000_000],
    ['1g', 1_000_000_000],
    ['1.5G', 1_500_000_000],
    ['2T', 2_000_000_000_000],
    ['10K', 10_000],
  ])('%s is %d bytes (powers of 1000, as upstream)', (size, bytes) => expect(sizeInBytes(size)).toBe(bytes));
});

describe('planLayout', () => {
  const GB = 1_000_000_000;
  const devices: BlockDevice[] = [
    { id: 1, type: 'physical', size: String(100 * GB) },
    { id: 2, type: 'virtual' },
    { id: 3, type: 'physical', size: String(500 * GB) },
    { id: 4, type: 'physical', size: String(50 * GB) },
  ];
  const layout = (entries: unknown[]) => storageLayoutSchema.parse(entries);

  it('gives each disk the first free physical device that holds its partitions', () => {
    const plan = planLayout(
      layout([
        { id: 'big', type: 'disk' },
        { id: 'big-1', type: 'partition', device: 'big', size: '200G' },
        { id: 'small', type: 'disk' },
        { id: 'small-1', type: 'partition', device: 'small', size: '10G' },
      ]),
      devices,
    );
    expect([...plan.blockOf].map(([disk, device]) => [disk, device.id])).toEqual([
      ['big', 3],
      ['small', 1],
    ]);
  });

  it('sizes alloc_pct partitions as a share of the device they landed on, rounding up', () => {
    const plan = planLayout(layout([{ id: 'd', type: 'disk' }, { id: 'p', type: 'partition', device: 'd', size: '1G', alloc_pct: 33 }]), devices);
    expect(plan.partitionBytes.get('p')).toBe(33 * GB);
  });

  it('refuses a layout with more disks than the machine has', () => {
    expect(() => planLayout(layout([1, 2, 3, 4].map((n) => ({ id: `d${n}`, type: 'disk' }))), devices)).toThrow(/no free block device on the machine holds disk "d4"/);
  });
});

describe('provision_data', () => {
  it('defaults to jammy on disk, as upstream', () => {
    expect(maas2ProvisionSchema.parse({})).toMatchObject({ distro: 'jammy', ephemeral: false });
  });
  it.each([{ distro: 'jammy distro_series=x' }, { kernel: '-k' }, { os: 'ubuntu;id' }, { arch: 'amd64 x' }])('refuses %j', (data) => {
    expect(maas2ProvisionSchema.safeParse(data).success).toBe(false);
  });
});
