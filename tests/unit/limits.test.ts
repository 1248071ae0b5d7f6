import * as fs from 'node:fs';
import * as path from 'node:path';
import { capacityProblem, readHostCapacity, supervisorLimits } from '../../src/charm/limits';
import { tempDir } from '../helpers/tmp';

describe('supervisord limits for the agents it runs', () => {
  it('stay at the defaults for a small host and grow in steps', () => {
    expect(supervisorLimits(10)).toEqual({ minfds: 1024, minprocs: 1024 });
    expect(supervisorLimits(0)).toEqual(supervisorLimits(128));
    expect(supervisorLimits(128).minfds).toBe(1024);
    expect(supervisorLimits(129).minfds).toBe(2048);
    expect(supervisorLimits(500)).toEqual({ minfds: 4096, minprocs: 2048 });
  });

  it('name what the host lacks', () => {
    expect(capacityProblem(200, { maxOpenFiles: 1024, memTotalMb: 65536 })).toBe('host too small: 200 agents need 2048 open files but the hard limit is 1024');
    expect(capacityProblem(100, { maxOpenFiles: 65536, memTotalMb: 2048 })).toBe('host too small: 100 agents need about 6400 MB of memory; the host has 2048 MB');
    expect(capacityProblem(10, { maxOpenFiles: 65536, memTotalMb: 2048 })).toBeUndefined();
  });

  it('reads the open-files hard limit and the memory from /proc', () => {
    const proc = tempDir('proc');
    fs.mkdirSync(path.join(proc, 'self'));
    fs.writeFileSync(path.join(proc, 'self', 'limits'), 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 4096                 files\n');
    fs.writeFileSync(path.join(proc, 'meminfo'), 'MemTotal:        2048000 kB\nMemFree: 1 kB\n');
    expect(readHostCapacity(proc)).toEqual({ maxOpenFiles: 4096, memTotalMb: 2000 });
  });
});
