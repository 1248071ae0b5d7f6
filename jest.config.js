/** Tests are TypeScript compiled by esbuild (type errors are caught by `npm run typecheck`). */
module.exports = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': '<rootDir>/scripts/jest-transform.js' },
  testMatch: ['<rootDir>/tests/**/*.test.ts'],
  testTimeout: 60000,
  // Builds dist/ when missing or stale: dispatch, the agent and the hook tools run from it.
  globalSetup: '<rootDir>/scripts/jest-global-setup.js',
};
