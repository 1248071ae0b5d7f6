/** Entry of dist/testflinger-agent-mqtt.js: all the MQTT code, loaded by mqttclient.ts only when MQTT is on. */
export { connect } from './mqttconnect';
export { startAgentMqtt } from './mqttagent';
