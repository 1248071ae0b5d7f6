/**
 * Everything MQTT (MQTT.js and our code around it, bundle.ts) is loaded only when MQTT is on.
 * It is bundled apart, as dist/testflinger-agent-mqtt.js beside the agent and the charm: an agent
 * with MQTT off never reads its 380 KB, so its idle memory stays what it was. Run from sources
 * (tests), it is bundle.ts itself.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The bundle's name in dist/ and in a runtime version (src/charm/runtime.ts copies it). */
export const MQTT_BUNDLE = 'testflinger-agent-mqtt';

export type MqttBundle = typeof import('./bundle');

/** The bundle beside this program (dist/, a runtime version), else the sources. */
export function loadMqttBundle(): MqttBundle {
  const bundled = path.join(__dirname, `${MQTT_BUNDLE}.js`);
  const id = fs.existsSync(bundled) ? bundled : './bundle';
  // A name in a variable: esbuild leaves this require alone, so the agent's bundle holds no MQTT.
  return require(id) as MqttBundle;
}
