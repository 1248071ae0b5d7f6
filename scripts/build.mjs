// Bundles each entry point into one self-contained file under dist/, so the charm needs no
// node_modules on the unit. Entry points that run as programs get a shebang and the run bit.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

const programs = {
  charm: 'src/charm/main.ts',
  'testflinger-agent': 'src/agent/main.ts',
  'testflinger-device-connector': 'src/connector/main.ts',
  devserver: 'src/devserver/main.ts',
  hooktool: 'src/hooktools/main.ts',
  demo: 'src/demo/main.ts',
  pack: 'src/pack/main.ts',
  // Loaded by the agent and the charm only when MQTT is on (src/agent/mqtt/loader.ts).
  'testflinger-agent-mqtt': 'src/agent/mqtt/bundle.ts',
  bench: 'bench/main.ts',
};

// The runtime runs once per device, so its memory counts many times: minified source is a
// smaller string on every agent's heap (about 1 MB less private memory each). Names are kept.
const minified = new Set(['testflinger-agent', 'testflinger-device-connector', 'testflinger-agent-mqtt']);

// The MQTT bundle is read by idle agents: MQTT.js's `debug` becomes a silent stub, and
// readable-stream (a copy of Node's streams for browsers) Node's own, which the agent has loaded
// already (src/agent/mqtt/debug-stub.js; bench/memory.ts measures what they cost).
const aliases = { 'testflinger-agent-mqtt': { debug: './src/agent/mqtt/debug-stub.js', 'readable-stream': 'node:stream' } };

await Promise.all(
  Object.entries(programs).map(([name, entry]) =>
    build({
      entryPoints: [entry],
      outfile: `dist/${name}.js`,
      bundle: true,
      platform: 'node',
      target: 'node18',
      format: 'cjs',
      banner: { js: '#!/usr/bin/env node' },
      legalComments: 'none',
      minify: minified.has(name),
      keepNames: minified.has(name),
      logLevel: 'warning',
      ...(aliases[name] ? { alias: aliases[name] } : {}),
    }),
  ),
);
for (const name of Object.keys(programs)) chmodSync(`dist/${name}.js`, 0o755);
