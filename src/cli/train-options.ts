/**
 * `ddpm train`'s flags and help: one option per TRAIN_OPTIONS entry (src/train/config.ts, the single source of
 * truth), its placeholder from its kind and its value checked when parsed (so `--minutes abc` fails before the run
 * directory or a folder is touched), grouped in --help by what a user decides (data, model, diffusion, optimiser,
 * run, output), with examples; and the command that samples a finished run.
 */
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { MAX_FOLDER_DEPTH, MAX_FOLDER_ENTRIES } from '../limits.ts';
import { UNET_CONFIGS, formatParamCount, unetParamCount } from '../models/unet.ts';
import { PRESET_RECIPES, TRAIN_OPTIONS, defaultTrainConfig, parseOptionValue, type OptionDef } from '../train/config.ts';
import { expectKind } from '../io/sniff-file.ts';
import { resolveModelPath } from '../io/model-path.ts';
import { addExamples, addRuntimeOptions, parseIntArg } from './common.ts';

/** Where each flag appears in --help, group by group, in the order a user decides them. */
const LAYOUT: readonly (readonly [string, readonly string[]])[] = [
  ['Data:', ['data', 'hflip', 'resize', 'on-corrupt', 'class-cond', 'p-uncond', 'folder-max-depth', 'folder-max-entries']],
  ['Model:', ['config', 'image-size', 'channels', 'base-channels', 'channel-mults', 'res-blocks', 'attn-resolutions', 'dropout', 'init-from']],
  ['Diffusion and loss:', ['schedule', 'T', 'objective', 'loss', 'var-type', 'min-snr-gamma']],
  ['Optimiser:', ['batch-size', 'lr', 'warmup', 'lr-decay', 'decay-start', 'decay-steps', 'min-lr', 'weight-decay', 'beta1', 'beta2', 'clip-norm', 'ema-decay', 'class-lr-scale']],
  ['Run:', ['steps', 'minutes', 'resume', 'seed', 'threads', 'ep']],
  ['Output:', ['out', 'checkpoint-every', 'sample-every', 'sample-count', 'sample-steps', 'snapshot-minutes', 'log-every', 'log-seconds']],
];

/** Placeholders of the free-form string flags; the others follow from their kind (see PLACEHOLDERS in common.ts). */
const STRING_ARGS: Record<string, string> = { data: '<dir|mnist>', 'init-from': '<path>' };

function placeholder(def: OptionDef): string {
  if (def.kind === 'boolean') return '[bool]';
  if (def.choices) return '<name>';
  if (def.kind === 'int') return '<n>';
  if (def.kind === 'number') return '<x>';
  if (def.kind === 'ints') return '<list>';
  return STRING_ARGS[def.flag] ?? '<value>';
}

/** A default as --help shows it: 1e-4, cosine, 1,2,2, none. */
function shown(v: unknown): string {
  if (Array.isArray(v)) return v.length > 0 ? v.join(',') : 'none';
  return v === '' ? "''" : String(v);
}

const at = (o: unknown, p: string): unknown => p.split('.').reduce<unknown>((x, k) => (x as Record<string, unknown> | undefined)?.[k], o);

/** The presets with what they are, for --help. */
function presetList(): string {
  return Object.entries(UNET_CONFIGS)
    .map(([name, m]) => `${name} ${m.inChannels}x${m.imageSize}x${m.imageSize} ${formatParamCount(unetParamCount(m))}`)
    .join(', ');
}

/** The option of one TRAIN_OPTIONS entry: the value checked as parsed, kept as the string applyOptions reads. */
function trainOption(def: OptionDef, d: ReturnType<typeof defaultTrainConfig>): Option {
  const dflt = at(d, def.path);
  // model flags change the preset's value; the default shown is mnist-28's. A preset's recipe (PRESET_RECIPES) may
  // start from another noise schedule, optimiser and batch settings.
  const recipes = Object.entries(PRESET_RECIPES)
    .map(([name, r]) => [name, at(r, def.path)] as const)
    .filter(([, v]) => v !== undefined && JSON.stringify(v) !== JSON.stringify(dflt))
    .map(([name, v]) => `; ${name}: ${shown(v)}`)
    .join('');
  const choices = def.choices ? `choices: ${def.choices.join(', ')}; ` : '';
  const opt = new Option(`--${def.flag} ${placeholder(def)}`, `${def.help} (${choices}default: ${def.path.startsWith('model.') ? `the preset's; mnist-28: ${shown(dflt)}` : shown(dflt) + recipes})`);
  // (the choices are checked here too, by parseOptionValue, rather than by commander: one format for all the options)
  if (def.kind !== 'boolean') {
    opt.argParser((v: string) => {
      try {
        parseOptionValue(def, v);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
      return v;
    });
  }
  return opt;
}

/** Every flag of `ddpm train` (with --threads and --ep), grouped for --help, and its examples. */
export function addTrainOptions(cmd: Command): Command {
  const d = defaultTrainConfig();
  const options = new Map<string, Option>();
  for (const def of TRAIN_OPTIONS) options.set(def.flag, trainOption(def, d));
  const more: Option[] = [
    new Option('--out <dir>', 'run directory (checkpoint/, samples/, log.jsonl) (default: runs/<name of the --data folder>, or runs/mnist)'),
    new Option('--config <name|file>', `model preset (${presetList()}) or a config JSON file; the model flags change it (default: mnist-28 for MNIST, rgb-32 for a folder, fitted to its images)`),
    new Option('--resume', 'continue from <out>/checkpoint (its config is kept; run flags and the learning-rate schedule may change)'),
    new Option('--folder-max-depth <n>', `folder levels a --data folder may have below it (default: ${MAX_FOLDER_DEPTH})`).argParser(parseIntArg('--folder-max-depth', 1)),
    new Option('--folder-max-entries <n>', `files and folders one walk of a --data folder may read (default: ${MAX_FOLDER_ENTRIES.toLocaleString('en-US')})`).argParser(parseIntArg('--folder-max-entries', 1)),
    ...addRuntimeOptions(new Command()).options,
  ];
  for (const o of more) options.set(o.long!.slice(2), o);
  for (const [group, flags] of LAYOUT) {
    for (const flag of flags) {
      const o = options.get(flag);
      if (o === undefined) throw new Error(`train --help layout: no option --${flag}`);
      cmd.addOption(o.helpGroup(group));
      options.delete(flag);
    }
  }
  if (options.size > 0) throw new Error(`train --help layout: --${[...options.keys()].join(', --')} in no group`);
  return addExamples(
    cmd,
    [
      'ddpm train --data ./my-images --minutes 15',
      'ddpm train --data mnist --steps 20000 --out runs/mnist',
      'ddpm train --out runs/mnist --resume --steps 40000',
    ],
    `A folder's image size and channels come from its images (one note says which); the run goes to runs/<folder>
and ends, whatever stops it (--steps, --minutes, Ctrl-C), with a checkpoint and a sample grid there; its last line
is the command that samples it, e.g. ddpm sample --checkpoint runs/my-images --n 16 --out my-images.png.`,
  );
}

/**
 * Before the run directory or a folder is touched: the input paths are of the right kind (a folder for --data, a
 * JSON file for --config *.json, a model for --init-from), each as one line naming what it found instead.
 */
export async function checkTrainInputs(flags: Record<string, string | boolean | undefined>, config: string | undefined): Promise<void> {
  const data = flags.data;
  if (typeof data === 'string' && data !== 'mnist') await expectKind(data, `--data ${data}`, ['directory'], "a folder of images (or 'mnist')");
  if (config !== undefined && config.endsWith('.json')) await expectKind(config, `--config ${config}`, ['json'], 'a config JSON file');
  const init = flags['init-from'];
  if (typeof init === 'string' && init !== '') {
    const dir = await resolveModelPath(init, '--init-from');
    await expectKind(dir, `--init-from ${init}`, ['directory'], 'a model, checkpoint or run directory', 'fine-tuning reads config.json and the weights');
  }
}

/**
 * The `ddpm sample` line a finished run prints: its run directory (which --checkpoint accepts), a grid named after
 * the run (one row per class for a class-conditional model). Quoted for a POSIX shell when a path needs it.
 */
export function sampleCommandFor(out: string, classCond = false): string {
  const name = path.basename(path.resolve(out)) || 'samples';
  const q = (s: string) => (/^[\w./,:@%+=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  return `ddpm sample --checkpoint ${q(out)} ${classCond ? '--class all' : '--n 16'} --out ${q(`${name}.png`)}`;
}
