import { main } from '../ops';
import { AgentHostCharm } from './charm';

void main((framework) => new AgentHostCharm(framework));
