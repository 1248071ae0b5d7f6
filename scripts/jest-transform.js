// Jest transform: TypeScript to CommonJS with esbuild (types are checked by `npm run typecheck`).
const { transformSync } = require('esbuild');

module.exports = {
  process(source, filename) {
    const result = transformSync(source, { loader: 'ts', format: 'cjs', target: 'node18', sourcemap: 'inline', sourcefile: filename });
    return { code: result.code };
  },
};
