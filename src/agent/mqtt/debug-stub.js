// MQTT.js's `debug` package in the agent's MQTT bundle (scripts/build.mjs aliases it here): always
// off, as it is on a unit (nothing sets DEBUG for the agent), without loading tty, util and os for
// it: about 1 MiB of an idle agent's memory. Sources (tests) keep the real package.
function createDebug() {
  const log = () => undefined;
  log.enabled = false;
  return log;
}
module.exports = createDebug;
