/** The HPE route's pure parts: versions compared as upstream reads them, packs in a listing, a pack's packages. */
import { compareVersions, packagesOf, packsInListing, plainVersion } from '../../src/connector/firmware/hpe-repo';

describe('plainVersion', () => {
  it.each([
    ['U30 v2.90 (07/20/2023)', '2.90.7.20.2023'],
    ['2.96 Aug 17 2023', '2.96'],
    ['3.40_10-01-2024', '3.40.10.1.2024'],
    ['0x31', '0'],
    ['HPK2', '2'],
  ])('%s reads as %s', (version, plain) => expect(plainVersion(version)).toBe(plain));
});

describe('compareVersions', () => {
  it('orders numerically part by part, so 2.10 is above 2.9 and a ROM date counts after its version', () => {
    expect(compareVersions('2.10', '2.9')).toBe(1);
    expect(compareVersions('U30 v2.90 (07/20/2023)', '2.10')).toBe(1);
    expect(compareVersions('3.08', '3.8')).toBe(0);
    expect(compareVersions('1.0', '1.0.1')).toBe(-1);
  });
});

describe('packsInListing', () => {
  it('finds each pack a directory listing links to, once, newest first, and nothing else', () => {
    const html = '<a href="2023.09.00.00/">2023.09.00.00/</a> 2023-09-13 <a href="2024.03.0_hotfix_1/">x</a> <a href="current/">current/</a> <a href="2024.09.00.00/">2024.09.00.00/</a>';
    expect(packsInListing(html)).toEqual(['2024.09.00.00', '2024.03.0_hotfix_1', '2023.09.00.00']);
  });
});

describe('packagesOf', () => {
  const current = { 'a.fwpkg': { target: ['t1', 't2'], version: '2' } };
  it('keeps .fwpkg files with a version, a single target completed from the current index, "null" as no minimum', () => {
    const pack = {
      'a.fwpkg': { target: 'old', deviceclass: 'c', version: '1', minimum_active_version: 'null' },
      'b.fwpkg': { target: 'only', version: '3', minimum_active_version: '2.0' },
      'notes.txt': { target: ['t1'], version: '9' },
      '../x.fwpkg': { target: ['t1'], version: '9' },
      'c.fwpkg': { target: ['t3'] },
    };
    expect(packagesOf(pack, current)).toEqual([
      { file: 'a.fwpkg', version: '1', minimumVersion: undefined, deviceClass: 'c', targets: ['t1', 't2'] },
      { file: 'b.fwpkg', version: '3', minimumVersion: '2.0', deviceClass: undefined, targets: ['only'] },
    ]);
  });
  it('an index that is no object gives no packages', () => {
    expect(packagesOf(['a.fwpkg'], current)).toEqual([]);
  });
});
