#!/usr/bin/env node
// ddpm-ts command line. The sources are TypeScript, run through tsx (a dependency), so no build step is needed.
import { register } from 'tsx/esm/api';

register();
// `ddpm ... | head` closes the pipe early: that is not an error
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv);
