/** `ddpm` — the command line. One file per subcommand; the work lives in the library. */
import { Command, CommanderError } from 'commander';
import { ImageFolderError } from '../data/folder.ts';
import { IdxError } from '../data/mnist.ts';
import { SafetensorsError } from '../io/safetensors.ts';
import { CheckpointError } from '../train/checkpoint.ts';
import { ExecutionProviderError } from '../node/ort.ts';
import { Interrupted } from '../errors.ts';
import { HELP_CONFIG, UserError } from './common.ts';
import { errnoWords } from './output.ts';
import { packageVersion } from '../pipeline/load.ts';
import { editCommand } from './edit.ts';
import { evalCommand } from './eval.ts';
import { exportCommand } from './export.ts';
import { inpaintCommand } from './inpaint.ts';
import { invertCommand } from './invert.ts';
import { noiseCommand } from './noise.ts';
import { sampleCommand } from './sample.ts';
import { serveCommand } from './serve.ts';
import { trainCommand } from './train.ts';

export function program(): Command {
  const p = new Command('ddpm')
    .description('Denoising Diffusion Probabilistic Models (Ho et al. 2020) in TypeScript, on onnxruntime')
    .version(packageVersion())
    .showHelpAfterError('(add --help for usage)')
    .configureHelp(HELP_CONFIG)
    .exitOverride();
  // copyInheritedSettings: addCommand (unlike .command()) does not pass on exitOverride / showHelpAfterError
  for (const cmd of [trainCommand(), sampleCommand(), inpaintCommand(), editCommand(), invertCommand(), noiseCommand(), exportCommand(), evalCommand(), serveCommand()]) p.addCommand(cmd.copyInheritedSettings(p));
  return p;
}

/** An error as the one line the user sees: no terminal colour codes (native libraries add them), no newlines. */
function oneLine(msg: string): string {
  return msg.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\s*\n\s*/g, ' ').trim();
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2; // commander already printed the message
    if (e instanceof Interrupted) return e.exitCode; // the command has said what it saved
    if (process.env.DDPM_DEBUG) console.error(e);
    if (e instanceof UserError) {
      process.stderr.write(`error: ${oneLine(e.message)}\n`);
      return e.exitCode;
    }
    if (
      e instanceof CheckpointError || e instanceof ImageFolderError || e instanceof IdxError || e instanceof SafetensorsError ||
      e instanceof ExecutionProviderError
    ) {
      process.stderr.write(`error: ${oneLine(e.message)}\n`);
      return 2; // a missing or corrupt checkpoint, image folder or data file, or an --ep this machine lacks, is bad input
    }
    // An OS error the commands did not expect (user paths are mapped to UserErrors where they are used): name the path.
    const err = e as NodeJS.ErrnoException;
    const words = errnoWords(e);
    const msg = words !== undefined && err.path ? `${err.path}: ${words}` : e instanceof Error ? e.message : String(e);
    process.stderr.write(`error: ${oneLine(msg)}\n`);
    return 1;
  }
}
