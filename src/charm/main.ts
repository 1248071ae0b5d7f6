import { main } from '../ops';
import { AgentHostCharm } from './charm';

// dispatch sets it for this process alone (Node's cache of the bundle's compiled code): what the
// charm starts (supervisord in a sandbox root, agents, npm) must not write there.
delete process.env['NODE_COMPILE_CACHE'];

void main((framework) => new AgentHostCharm(framework));
