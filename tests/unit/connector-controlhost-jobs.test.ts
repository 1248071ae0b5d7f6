/**
 * What each control-host type makes of a job's provision_data: the request it sends, key for key
 * as upstream's connectors build it, and the jobs it refuses before any request (naming the key).
 */
import * as path from 'node:path';
import { jobFileSchema } from '../../src/connector/config';
import type { PhaseContext } from '../../src/connector/phases';
import { controlHostConfigSchema } from '../../src/connector/devices/controlhost/config';
import { iotProvision, iotRequest } from '../../src/connector/devices/controlhost/iot';
import { parse as parseYaml } from 'yaml';
import { kvmProvision, kvmRequest, restoresOemImage } from '../../src/connector/devices/controlhost/kvm';
import { checkOemSteps, oemScriptFor } from '../../src/connector/devices/controlhost/oem-login';
import { OEM_USER_DATA } from '../../src/connector/devices/controlhost/oem-user-data';
import { prepareImageDeploy } from '../../src/connector/devices/controlhost/oem-image-deploy';
import { DEFAULT_REDEPLOY_GRUB_CFG, DEFAULT_REDEPLOY_USER_DATA } from '../../src/connector/devices/controlhost/oem-redeploy-files';
import { oemAutoinstallProvision, oemRequest, usesIso } from '../../src/connector/devices/controlhost/oem-autoinstall';
import { sshKeygen } from '../helpers/sshd';
import { tempDir } from '../helpers/tmp';

const lines: string[] = [];
function ctxFor(job: Record<string, unknown>): PhaseContext {
  const device = controlHostConfigSchema.parse({ device_ip: '10.0.0.5', agent_name: 'a1', control_host: 'ch-1.lab', reboot_script: [] });
  return { device, job: jobFileSchema.parse(job), runDir: tempDir('jobs'), print: (l) => lines.push(l), sleep: async () => undefined };
}

let publicKey: string;
beforeAll(() => {
  const home = tempDir('home');
  publicKey = sshKeygen(path.join(home, '.ssh', 'id_rsa')).publicKey;
  process.env['HOME'] = home;
});

const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('control_host_kvm', () => {
  const request = (provision_data: Record<string, unknown>, test_data?: Record<string, unknown>) => {
    const ctx = ctxFor({ provision_data, ...(test_data ? { test_data } : {}) });
    return kvmRequest(ctx, kvmProvision(ctx.job));
  };

  it('with a preset, forwards every key but the autoinstall ones, which become autoinstall_conf', () => {
    expect(request({ preset: 'desktop-noble', url: 'http://x/y.iso', oem: 'dell', autoinstall_storage_layout: 'lvm', robot_retries: 2 }, { test_username: 'qa', test_password: 'pw' })).toEqual({
      preset: 'desktop-noble',
      url: 'http://x/y.iso',
      oem: 'dell',
      robot_retries: 2,
      username: 'qa',
      password: 'pw',
      autoinstall_conf: { storage_layout: 'lvm' },
      authorized_keys: [`${publicKey}\n`],
    });
  });

  it('without autoinstall keys, sends autoinstall_conf null; a valid base64 YAML user-data passes', () => {
    expect(request({ url: 'http://x/y.iso', robot_tasks: ['a.robot'] })).toMatchObject({ autoinstall_conf: null, username: 'ubuntu', password: 'ubuntu' });
    expect(request({ url: 'http://x/y.iso', robot_tasks: ['a.robot'], autoinstall_base_user_data: b64('#cloud-config\nusers: []\n') })).toMatchObject({ autoinstall_conf: { base_user_data: b64('#cloud-config\nusers: []\n') } });
  });

  it.each([
    [{ url: 'http://x', robot_tasks: [], autoinstall_base_user_data: 'not base64!' }, 'provision_data.autoinstall_base_user_data: Provided `base_user_data` is not base64 encoded.'],
    [{ url: 'http://x', robot_tasks: [], autoinstall_base_user_data: b64('a: [b\n') }, 'provision_data.autoinstall_base_user_data: Provided `base_user_data` is not a valid YAML.'],
    [{ robot_tasks: [] }, 'provision_data.url: Required (or a preset, or an alloem_url)'],
    [{ url: 'http://x/a b.iso', robot_tasks: [] }, 'provision_data.url: a URL without spaces or control characters'],
    [{ alloem_url: 'http://x/alloem.iso' }, 'provision_data.robot_tasks: Required (unless a preset is given)'],
  ])('refuses %j', (provisionData, message) => {
    expect(() => kvmProvision(ctxFor({ provision_data: provisionData }).job)).toThrow(message);
  });

  describe('an OEM 22.04 restore (upstream: the control host restores, the connector installs the test image)', () => {
    it('the desktop-jammy-oem preset logs in as the image does (ubuntu/u) and leaves the test image url out of the request', () => {
      expect(request({ preset: 'desktop-jammy-oem', url: 'http://x/test.iso', oem: 'hp' }, { test_password: 'pw' })).toEqual({
        preset: 'desktop-jammy-oem',
        oem: 'hp',
        username: 'ubuntu',
        password: 'u',
        authorized_keys: [`${publicKey}\n`],
      });
    });

    it('with the preset, alloem_url is sent as url; without a preset, it is the image and robot_tasks drive the install', () => {
      expect(request({ preset: 'desktop-jammy-oem', alloem_url: 'http://x/alloem.iso', url: 'http://x/test.iso' })).toMatchObject({ url: 'http://x/alloem.iso', username: 'ubuntu', password: 'u' });
      expect(request({ preset: 'desktop-jammy-oem', alloem_url: 'http://x/alloem.iso' })).not.toHaveProperty('alloem_url');
      expect(request({ alloem_url: 'http://x/alloem.iso', url: 'http://x/test.iso', robot_tasks: ['oem.robot'] }, { test_username: 'qa' })).toEqual({
        url: 'http://x/alloem.iso',
        username: 'ubuntu',
        password: 'u',
        autoinstall_conf: null,
        robot_tasks: ['oem.robot'],
        authorized_keys: [`${publicKey}\n`],
      });
    });

    it('restoresOemImage: alloem_url or the preset, nothing else', () => {
      const data = (p: Record<string, unknown>) => kvmProvision(ctxFor({ provision_data: p }).job);
      expect(restoresOemImage(data({ alloem_url: 'http://x/a.iso', robot_tasks: [] }))).toBe(true);
      expect(restoresOemImage(data({ preset: 'desktop-jammy-oem' }))).toBe(true);
      expect(restoresOemImage(data({ preset: 'desktop-noble' }))).toBe(false);
      expect(restoresOemImage(data({ url: 'http://x/a.iso', robot_tasks: [] }))).toBe(false);
    });

    it("provision_data.oem picks upstream's OEM script; anything else is the generic one", () => {
      expect(['hp', 'dell', 'lenovo', 'acme', 'constructor', undefined].map((oem) => oemScriptFor(oem).name)).toEqual(['hp_oemscript', 'dell_oemscript', 'lenovo_oemscript', 'oemscript', 'oemscript', 'oemscript']);
    });

    it('a test_password chpasswd would read as two lines, or a test image url the OEM script refuses, fails before any request', () => {
      expect(() => checkOemSteps(ctxFor({ test_data: { test_password: 'pw\nroot:x' } }), undefined)).toThrow('test_data.test_password: a password on one line');
      expect(() => checkOemSteps(ctxFor({ provision_data: { url: 'http://x/a$(id).iso' } }), 'http://x/a$(id).iso')).toThrow('provision_data.url');
      expect(() => checkOemSteps(ctxFor({ test_data: { test_password: 'fine: pw' } }), undefined)).not.toThrow();
    });
  });

  it("autoinstall_oem sends the OEM user-data and its storage layout, and no other autoinstall key", () => {
    const conf = request({ url: 'http://x/y.iso', robot_tasks: ['a.robot'], autoinstall_oem: true, autoinstall_storage_layout: 'lvm' })['autoinstall_conf'] as Record<string, string>;
    expect(Object.keys(conf).sort()).toEqual(['base_user_data', 'storage_layout']);
    expect(conf['storage_layout']).toBe('direct');
    const userData = parseYaml(Buffer.from(conf['base_user_data'] as string, 'base64').toString('utf8'));
    expect(userData).toMatchObject({ autoinstall: { version: 1, source: { id: 'ubuntu-desktop' }, storage: { layout: { name: 'direct', 'reset-partition': '12G' } } } });
    expect(Buffer.from(conf['base_user_data'] as string, 'base64').toString('utf8')).toBe(OEM_USER_DATA);
  });
});

describe('control_host_iot', () => {
  const request = (provision_data: Record<string, unknown>, test_data?: Record<string, unknown>) => {
    const ctx = ctxFor({ provision_data, ...(test_data ? { test_data } : {}) });
    return iotRequest(ctx, iotProvision(ctx.job));
  };

  it('url wins over urls; an empty plan is no plan; the user is ubuntu_sso_email when given', () => {
    expect(request({ url: 'https://a/1.img', urls: ['https://a/2.img'], provision_plan: {}, ubuntu_sso_email: 'qa@example.com' })).toEqual({ username: 'qa@example.com', password: 'ubuntu', preset: null, preset_kwargs: null, urls: ['https://a/1.img'] });
  });

  it("the plan's credentials are the default for the job's, and a difference from the test phase's is warned about", () => {
    lines.length = 0;
    const plan = { config: { username: 'admin', password: 'secret' }, run_stage: [] };
    expect(request({ urls: [], provision_plan: plan })).toMatchObject({ username: 'admin', password: 'secret', custom_provision_plan: plan });
    expect(lines).toContain('Provisioning is using a username different from what the test phase expects, which may prevent it from accessing the DUT later on.');
  });

  it.each([
    [{ urls: ['ftp//nope'] }, 'url format is not correct'],
    [{ provision_plan: { run_stage: [] } }, 'provision_data.provision_plan.config: Required'],
    [{ provision_plan: { config: {}, run_stage: [{ initial_login: { method: 'console-conf' } }] } }, 'ubuntu_sso_email is required when initial login using console-conf'],
  ])('refuses %j', (provisionData, message) => {
    expect(() => iotProvision(ctxFor({ provision_data: provisionData }).job)).toThrow(message);
  });
});

describe('oem_autoinstall', () => {
  it('takes the ISO route when either ISO key is set, and needs both then', () => {
    expect(usesIso(oemAutoinstallProvision(ctxFor({ provision_data: {} }).job))).toBe(false);
    expect(() => oemAutoinstallProvision(ctxFor({ provision_data: { control_host_iso_type: 'bios' } }).job)).toThrow('An ISO URL (e.g. control_host_iso_url) is required in provision_data.');
    expect(() => oemAutoinstallProvision(ctxFor({ provision_data: { control_host_iso_url: 'http://x/a.iso' } }).job)).toThrow('An ISO type (e.g. control_host_iso_type) is required in provision_data.');
  });

  it("the url route's default user-data installs onto the installer's disk offline, and its default boot menu redeploys", () => {
    const userData = parseYaml(DEFAULT_REDEPLOY_USER_DATA);
    expect(userData.autoinstall).toMatchObject({ version: 1, storage: { layout: { name: 'direct', match: { 'install-media': true } } }, 'early-commands': ['nmcli networking off'], shutdown: 'reboot' });
    expect(userData.autoinstall['user-data'].write_files.map((f: { path: string }) => f.path)).toEqual([
      '/usr/share/glib-2.0/schemas/certification.gschema.override',
      '/usr/bin/set_usb_boot.sh',
      '/usr/bin/set_ubuntu_boot.sh',
      '/usr/local/bin/rdp-setup',
    ]);
    expect(DEFAULT_REDEPLOY_GRUB_CFG).toContain('autoinstall rp-partuuid=RP_PARTUUID');
  });

  it.each([
    [{ url: 'https://oem-share.canonical.com/share/proj/x.iso' }, 'images on oem-share.canonical.com are not supported by this connector yet (upstream downloads them on the DUT with rclone'],
    [{ url: 'http://x/a$(id).iso' }, 'provision_data.url'],
    [{ url: 'http://x/images/' }, "provision_data.url: the image's file name must be"],
    [{ url: 'http://x/a.iso', user_data: '../../etc/passwd' }, 'provision_data.user_data: the name of a file in the provision attachments'],
  ])('the url route refuses %j before anything is done', (provisionData, message) => {
    const ctx = ctxFor({ provision_data: provisionData });
    expect(() => prepareImageDeploy(ctx, oemAutoinstallProvision(ctx.job))).toThrow(message);
  });

  it("a stock ISO comes with the connector's meta-data (empty), user-data and grub.cfg; other types with none", () => {
    const request = (type: string) => {
      const ctx = ctxFor({ provision_data: { control_host_iso_url: 'http://x/noble-desktop.iso', control_host_iso_type: type } });
      return oemRequest(ctx, oemAutoinstallProvision(ctx.job));
    };
    const decoded = (value: unknown) => Buffer.from(value as string, 'base64').toString('utf8');
    const stock = request('stock');
    expect(decoded(stock['meta_data_b64'])).toBe('');
    const userData = parseYaml(decoded(stock['user_data_b64']));
    expect(userData).toMatchObject({
      autoinstall: { version: 1, identity: { username: 'ubuntu' }, storage: { layout: { name: 'direct' } }, ssh: { 'allow-pw': true, 'authorized-keys': [publicKey.trim()] } },
    });
    expect(userData.autoinstall['user-data'].runcmd).toContainEqual(['apt-get', 'install', '-y', 'openssh-server']);
    expect(decoded(stock['grub_cfg_b64'])).toContain('linux\t/casper/vmlinuz autoinstall ds=nocloud\\;s=/cdrom/cloud-configs/ --- quiet splash');
    expect(request('bootstrap')).toMatchObject({ meta_data_b64: null, user_data_b64: null, grub_cfg_b64: null });
  });
});
