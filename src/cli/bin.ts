/**
 * The `ddpm` executable: runs the CLI on process.argv and sets the exit code. bin/ddpm.js loads the compiled
 * copy (dist/cli/bin.js); tests and scripts in this repository run this source with `node --import tsx`.
 */
import { main } from './main.ts';

// `ddpm ... | head` closes the pipe early: that is not an error
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
process.exitCode = await main(process.argv);
