/** `ddpm` — the command line. One file per subcommand; the work lives in the library. */
import { Command, CommanderError } from 'commander';
import { UserError } from './common.ts';
import { trainCommand } from './train.ts';

export function program(): Command {
  const p = new Command('ddpm')
    .description('Denoising Diffusion Probabilistic Models (Ho et al. 2020) in TypeScript, on onnxruntime')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();
  p.addCommand(trainCommand());
  return p;
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2; // commander already printed the message
    if (e instanceof UserError) {
      process.stderr.write(`error: ${e.message}\n`);
      return e.exitCode;
    }
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`error: ${msg}\n`);
    if (process.env.DDPM_DEBUG) console.error(e);
    return 1;
  }
}
