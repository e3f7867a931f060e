/** Shared CLI plumbing: runtime flags, number parsing, errors that print without a stack. */
import os from 'node:os';
import { InvalidArgumentError, Option, type Command, type HelpConfiguration } from 'commander';
import { MAX_THREADS } from '../limits.ts';
import { checkUNetMemory, type UNetConfig } from '../models/unet.ts';
import { EXECUTION_PROVIDERS } from '../node/ort.ts';
import { UserError } from '../errors.ts';
import { expectKind } from '../io/sniff-file.ts';

// The library's loaders throw it too (src/errors.ts); every command imports it from here.
export { UserError };

/** An integer flag in [min, max]; max defaults to the largest safe integer (so '1e300' is refused, not rounded). */
export function parseIntArg(name: string, min = 0, max = Number.MAX_SAFE_INTEGER): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got '${v}'`);
    }
    return n;
  };
}

/** A script's integer flag (node:util parseArgs gives strings): `dflt` when absent, else an integer in [min, max]. */
export function intFlag(v: string | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(x) || x < min || x > max) throw new UserError(`--${name}: expected an integer in [${min}, ${max}], got '${v}'`);
  return x;
}

/**
 * Refuse, before any work, a model that cannot `mode` at `batch` images per call in this machine's memory
 * (checkUNetMemory's estimate against os.totalmem()). `where` names the file the config came from.
 */
export function checkModelFits(unet: UNetConfig, mode: 'train' | 'sample', batch: number, where: string): void {
  try {
    checkUNetMemory(unet, mode, batch, os.totalmem());
  } catch (e) {
    throw new UserError(`${where}: ${(e as Error).message}`);
  }
}

/** Refuse, before any work, outputs that need more than half of this machine's memory. */
export function checkOutputMemory(bytes: number, what: string): void {
  const allowed = os.totalmem() / 2;
  if (bytes > allowed) {
    throw new UserError(`${what} need ${(bytes / 1e9).toPrecision(2)} GB in memory, over the ${(allowed / 1e9).toFixed(1)} GB allowed (half of this machine's memory)`);
  }
}

export function parseFloatArg(name: string, min = -Infinity, max = Infinity): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}], got '${v}'`);
    return n;
  };
}

/** --threads and --ep, shared by every command that runs a model. */
export function addRuntimeOptions(cmd: Command): Command {
  return cmd
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', parseIntArg('--threads', 1, MAX_THREADS))
    .addOption(new Option('--ep <name>', 'execution provider (checked before any work)').choices(EXECUTION_PROVIDERS).default('cpu'));
}

/**
 * The placeholders of every command's --help, one word per kind of value: `<n>` an integer, `<x>` a number,
 * `<list>` comma-separated values, `<file>` a file (read or written), `<dir>` a directory, `<path>` either (or a
 * shipped model's name), `<name>` one of a fixed set (listed as choices), `<value>` anything else. Alternatives join
 * with '|' (`<name|file>`), and a literal value may stand among them (`<dir|mnist>`). test/cli-help.test.ts holds
 * every option to this list.
 */
export const PLACEHOLDERS = ['n', 'x', 'list', 'file', 'dir', 'path', 'name', 'value'] as const;

/**
 * One style of option description for every command (program() sets it, subcommands inherit it): defaults and
 * choices without JSON quotes, `(choices: ddpm, ddim, dpm++; default: ddim)`, as the hand-written `(default: 1)`.
 */
export const HELP_CONFIG: HelpConfiguration = {
  optionDescription(option: Option): string {
    const extra: string[] = [];
    let description = option.description;
    if (option.argChoices) {
      extra.push(`choices: ${option.argChoices.join(', ')}`);
      // a default written in the description joins the choices: (choices: 1, 3; default: ...)
      const at = description.lastIndexOf(' (default: ');
      if (at >= 0 && description.endsWith(')')) {
        extra.push(description.slice(at + 2, -1));
        description = description.slice(0, at);
      }
    }
    if (option.defaultValue !== undefined && (option.required || option.optional)) {
      extra.push(`default: ${option.defaultValueDescription ?? (Array.isArray(option.defaultValue) ? option.defaultValue.join(',') : String(option.defaultValue))}`);
    }
    return extra.length > 0 ? `${description} (${extra.join('; ')})` : description;
  },
};

/** The Examples section of a command's --help: one `ddpm ...` command a line (test/cli-help.test.ts runs them). */
export function addExamples(cmd: Command, lines: readonly string[], before = ''): Command {
  return cmd.addHelpText('after', `${before ? `\n${before}\n` : ''}\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}`);
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/**
 * An input image (--image, --mask) exists and is not a file of another kind: "--image digits is a directory, not a
 * PNG, JPEG or WebP image". A file whose kind is not known is left to the decoder's message.
 */
export async function checkImageInput(flag: string, file: string): Promise<void> {
  const kind = await expectKind(file, `${flag} ${file}`, ['png', 'jpeg', 'webp'], 'a PNG, JPEG or WebP image');
  if (kind === null) throw new UserError(`${flag}: no such file: ${file}`);
}
