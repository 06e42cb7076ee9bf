#!/usr/bin/env node
// Runs the compiled command (dist/, which `npm ci` builds through the prepare script, and `npm run build`
// rebuilds), so starting larder compiles no TypeScript. LARDER_FROM_SOURCE=1 runs the TypeScript sources
// instead, through tsx (a development dependency), for a change not yet built.
if (process.env.LARDER_FROM_SOURCE === '1') {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../cli/larder.ts');
} else {
  try {
    await import('../dist/larder.js');
  } catch (err) {
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/larder.js')) throw err;
    console.error('larder: dist/larder.js is missing: run `npm run build` (npm ci runs it too)');
    process.exit(1);
  }
}
