/** Entry of dist/testflinger-agent-mqtt.js: all the MQTT code, loaded by loader.ts only when MQTT is on. */
export { connect } from './connect';
export { startAgentMqtt } from './agent';
