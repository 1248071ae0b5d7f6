import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AgentUserClaims, agentUserName, readHostUsers, type HostUsers } from '../../src/charm/agentusers';
import { tempDir } from '../helpers/tmp';

/** A long name, and a short one crafted to get the long one's user: its first 20 characters and hash. */
const LONG = 'lab-row-4-rack-2-machine-with-a-long-name';
const CRAFTED = `${LONG.slice(0, 20)}-${createHash('sha256').update(LONG).digest('hex').slice(0, 8)}`;
const HOMES = '/var/lib/testflinger-agent/home';

const noUsers = (): HostUsers => ({ all: new Set(), locked: new Set(), owners: new Map() });

describe("agents' users never collide", () => {
  it('a crafted pair of names maps to one user name (why the claims are needed)', () => {
    expect(agentUserName(CRAFTED)).toBe(agentUserName(LONG));
  });

  it('the first agent to claim a user keeps it; the other is refused, naming it', () => {
    const claims = new AgentUserClaims(noUsers);
    expect(claims.claim(CRAFTED)).toBe(agentUserName(LONG));
    expect(() => claims.claim(LONG)).toThrow(`its user ${agentUserName(LONG)} is agent "${CRAFTED}"'s; rename one of the directories`);
    // The holder asks again (another render in the same event): still its own.
    expect(claims.claim(CRAFTED)).toBe(agentUserName(LONG));
  });

  it("an existing user made for another agent (its home) is never taken over, nor one made for none", () => {
    const etc = tempDir('etc');
    const user = agentUserName(LONG);
    fs.writeFileSync(path.join(etc, 'passwd'), `root:x:0:0:root:/root:/bin/bash\n${user}:x:990:990::${HOMES}/${LONG}:/bin/bash\ntf-plain:x:991:991::/home/tf-plain:/bin/sh\n`);
    fs.writeFileSync(path.join(etc, 'shadow'), '');
    const users = () => readHostUsers(path.join(etc, 'passwd'), path.join(etc, 'shadow'), HOMES);
    expect(users().owners?.get(user)).toBe(LONG);
    expect(() => new AgentUserClaims(users).claim(CRAFTED)).toThrow(`its user ${user} is agent "${LONG}"'s`);
    expect(new AgentUserClaims(users).claim(LONG)).toBe(user);
    expect(() => new AgentUserClaims(users).claim('plain')).toThrow("its user tf-plain exists and is no agent's user");
  });
});
