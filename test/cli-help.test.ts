/**
 * Every command's --help in one style, and its examples honest (issue 32, item 7): placeholders from one
 * vocabulary (PLACEHOLDERS in src/cli/common.ts), defaults written `(default: 1)`, an Examples section of two to
 * four `ddpm ...` lines. Every example parses (its flags exist, its values are valid). Every example that needs no
 * training run, which is every one but `train`'s own and those naming a `runs/` directory, runs as written in a
 * fresh directory outside the repository (so the shipped models are found by name, not by a path), with its
 * inputs (digit.png, a mask, a photo, a folder of samples) made there first; only --n, --steps and --fid are
 * lowered to keep it quick. A `runs/<x>` an example names must be one that a train example writes.
 */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { CommanderError, type Command } from 'commander';
import { PLACEHOLDERS } from '../src/cli/common.ts';
import { program } from '../src/cli/main.ts';
import { defaultOut } from '../src/cli/train-data.ts';
import { encodePng } from '../src/io/image.ts';
import { runCli } from './cli-helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'src', 'cli', 'bin.ts');
const COMMANDS = program().commands.map((c) => c.name());

/** The `ddpm ...` lines of a help text's Examples section, split into arguments (after `ddpm`). */
function examples(help: string): string[][] {
  const at = help.indexOf('\nExamples:\n');
  if (at < 0) return [];
  const lines = help.slice(at + '\nExamples:\n'.length).split('\n');
  const out: string[][] = [];
  for (const line of lines) {
    if (!line.startsWith('  ddpm ')) break;
    assert.doesNotMatch(line, /["'#`]/, `an example a test can split on spaces: ${line}`);
    out.push(line.trim().split(/\s+/).slice(1));
  }
  return out;
}

const helps = new Map<string, string>();
let dir: string;

before(async () => {
  for (const name of COMMANDS) {
    const r = await runCli([name, '--help']);
    assert.equal(r.code, 0, r.stderr);
    helps.set(name, r.stdout);
  }
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-help-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('every command has an Examples section of 2-4 lines, each a ddpm command of its own', () => {
  assert.deepEqual(COMMANDS, ['train', 'sample', 'inpaint', 'edit', 'invert', 'noise', 'export', 'eval', 'serve']);
  for (const [name, help] of helps) {
    const ex = examples(help);
    assert.ok(ex.length >= 2 && ex.length <= 4, `${name}: ${ex.length} examples`);
    for (const args of ex) assert.equal(args[0], name, `${name}'s example runs ${args[0]}`);
  }
});

test('placeholders come from one vocabulary and defaults are written one way', () => {
  const allowed = new Set<string>([...PLACEHOLDERS, 'mnist']);
  for (const cmd of program().commands) {
    for (const o of cmd.options) {
      for (const m of o.flags.matchAll(/<([^>]+)>|\[([^\]]+)\]/g)) {
        if (m[2] !== undefined) {
          assert.equal(m[2], 'bool', `${cmd.name()} ${o.flags}: an optional value is [bool]`);
          continue;
        }
        for (const part of m[1]!.split('|')) assert.ok(allowed.has(part), `${cmd.name()} ${o.flags}: <${part}> is not one of ${[...allowed].join(', ')}`);
      }
    }
  }
  for (const [name, help] of helps) {
    const flat = help.replace(/\s*\n\s*/g, ' ');
    assert.doesNotMatch(flat, /default: "|choices: "/, `${name}: a default or choice in JSON quotes`);
    assert.doesNotMatch(flat, /\(default [^:]|; default [^:]/, `${name}: a default without its colon`);
    assert.doesNotMatch(flat, /\(default: [^)]*\) \(choices:/, `${name}: the choices apart from the default`);
  }
});

test('train --help is grouped by what a user decides, in that order, and says how a run without an end stops', () => {
  const help = helps.get('train')!;
  const at = ['Data:', 'Model:', 'Diffusion and loss:', 'Optimiser:', 'Run:', 'Output:'].map((h) => help.indexOf(`\n${h}\n`));
  assert.ok(at.every((i, k) => i > 0 && (k === 0 || i > at[k - 1]!)), `groups in order: ${at.join(', ')}`);
  assert.match(help, /--steps <n>\s+training steps \(0 = until Ctrl-C or --minutes\)/);
  assert.match(help.replace(/\s*\n\s*/g, ' '), /--schedule <name>\s+β schedule \(choices: linear, cosine, sigmoid, scaledLinear; default: linear; rgb-32: cosine\)/);
});

/** Parse `ddpm <args>` with every command's action replaced by nothing: the flags exist and their values parse. */
async function parses(args: string[]): Promise<string | undefined> {
  const p = program();
  let err = '';
  const quiet = (c: Command) => c.configureOutput({ writeErr: (s) => void (err += s), writeOut: () => {} });
  quiet(p);
  for (const c of p.commands) quiet(c).action(() => {});
  try {
    await p.parseAsync(['node', 'ddpm', ...args]);
    return undefined;
  } catch (e) {
    return e instanceof CommanderError ? err || e.message : String(e);
  }
}

test('every example parses, and every runs/<x> an example reads is one a train example writes', async () => {
  const runs = new Set<string>();
  for (const args of examples(helps.get('train')!)) {
    const out = args.indexOf('--out');
    const data = args.indexOf('--data');
    runs.add(out >= 0 ? args[out + 1]! : defaultOut(data >= 0 ? args[data + 1] : undefined));
  }
  for (const [name, help] of helps) {
    for (const args of examples(help)) {
      assert.equal(await parses(args), undefined, `ddpm ${args.join(' ')}`);
      if (name === 'train') continue;
      for (const a of args) if (a.startsWith('runs/')) assert.ok(runs.has(a), `ddpm ${args.join(' ')}: no train example writes ${a} (they write ${[...runs].join(', ')})`);
    }
  }
});

/** The example's arguments with --n, --steps and --fid lowered (never raised), so that it runs in seconds. */
function quick(args: string[]): string[] {
  const caps: Record<string, number> = { '--n': 2, '--steps': 12, '--fid': 2 };
  return args.map((a, i) => (i > 0 && caps[args[i - 1]!] !== undefined ? String(Math.min(Number(a), caps[args[i - 1]!]!)) : a));
}

function ddpm(args: string[], cwd: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', import.meta.resolve('tsx'), BIN, ...args], { cwd, encoding: 'utf8', timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

test('every example that needs no training run runs as written, outside the repository', { timeout: 600_000 }, async (t) => {
  // the inputs the examples name: a digit, a mask of its lower half, a sketch, a photo, a folder of samples
  const digit = Uint8Array.from({ length: 28 * 28 }, (_, i) => (Math.abs((i % 28) - 14) < 3 && i > 4 * 28 && i < 24 * 28 ? 255 : 0));
  const gray = (data: Uint8Array) => encodePng({ data, width: 28, height: 28, channels: 1 });
  await writeFile(path.join(dir, 'digit.png'), await gray(digit));
  await writeFile(path.join(dir, 'lower-half.png'), await gray(Uint8Array.from({ length: 28 * 28 }, (_, i) => (i >= 14 * 28 ? 255 : 0))));
  await writeFile(path.join(dir, 'sketch.png'), await gray(Uint8Array.from({ length: 28 * 28 }, (_, i) => (Math.abs(Math.hypot((i % 28) - 14, Math.floor(i / 28) - 14) - 8) < 2 ? 255 : 0))));
  const photo = Buffer.alloc(48 * 40 * 3, 0).map((_, k) => (k * 7) % 256);
  await sharp(photo, { raw: { width: 48, height: 40, channels: 3 } }).jpeg().toFile(path.join(dir, 'photo.jpg'));
  await mkdir(path.join(dir, 'my-samples'));
  for (const i of [0, 1, 2]) await writeFile(path.join(dir, 'my-samples', `s${i}.png`), await gray(digit.map((v, j) => (j % (i + 2) === 0 ? 0 : v))));

  for (const name of COMMANDS) {
    for (const args of examples(helps.get(name)!)) {
      const line = `ddpm ${args.join(' ')}`;
      if (name === 'train' || args.some((a) => a.startsWith('runs/'))) {
        t.diagnostic(`parsed only (needs a training run): ${line}`);
        continue;
      }
      if (name === 'serve') {
        t.diagnostic(`parsed only (a server runs until stopped; test/serve.test.ts runs one): ${line}`);
        continue;
      }
      await t.test(line, async () => {
        const t0 = performance.now();
        const r = await ddpm(quick(args), dir);
        assert.equal(r.code, 0, `${line}: exit ${r.code}\n${r.out}`);
        const out = args.indexOf('--out');
        if (out >= 0) assert.ok(existsSync(path.join(dir, args[out + 1]!)), `${line} wrote no ${args[out + 1]}`);
        t.diagnostic(`${((performance.now() - t0) / 1000).toFixed(1)} s`);
      });
    }
  }
});
