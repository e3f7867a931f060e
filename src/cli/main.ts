/** `ddpm` — the command line. One file per subcommand; the work lives in the library. */
import { Command, CommanderError } from 'commander';
import { ImageFolderError } from '../data/folder.ts';
import { IdxError } from '../data/mnist.ts';
import { SafetensorsError } from '../io/safetensors.ts';
import { CheckpointError } from '../train/checkpoint.ts';
import { UserError } from './common.ts';
import { packageVersion } from './model.ts';
import { evalCommand } from './eval.ts';
import { exportCommand } from './export.ts';
import { noiseCommand } from './noise.ts';
import { sampleCommand } from './sample.ts';
import { trainCommand } from './train.ts';

export function program(): Command {
  const p = new Command('ddpm')
    .description('Denoising Diffusion Probabilistic Models (Ho et al. 2020) in TypeScript, on onnxruntime')
    .version(packageVersion())
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();
  // copyInheritedSettings: addCommand (unlike .command()) does not pass on exitOverride / showHelpAfterError
  for (const cmd of [trainCommand(), sampleCommand(), noiseCommand(), exportCommand(), evalCommand()]) p.addCommand(cmd.copyInheritedSettings(p));
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
    if (e instanceof CheckpointError || e instanceof ImageFolderError || e instanceof IdxError || e instanceof SafetensorsError) {
      process.stderr.write(`error: ${e.message}\n`);
      return 2; // a missing or corrupt checkpoint, image folder or data file is bad input
    }
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`error: ${msg}\n`);
    if (process.env.DDPM_DEBUG) console.error(e);
    return 1;
  }
}
