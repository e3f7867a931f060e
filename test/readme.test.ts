/**
 * Every ```ts block of the README runs, as a user would run it, so the README cannot rot: each block is a file
 * in a temporary directory, type-checked (strict, against the package's .d.ts) and then run with tsx, importing
 * the built package by its name (`ddpm-ts` and `ddpm-ts/browser` resolve to this repository's dist/, rebuilt
 * first when a source is newer). The directory holds `model.onnx` (the shipped export, as next to a page) and no
 * `models/`: the blocks find the shipped models by name, from the package, as in any project that installs it
 * (issue 32); what a block writes stays there. Blocks that import the
 * browser entry get a `fetch` that serves that directory, as a page's server would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface Run {
  code: number;
  out: string;
}

function run(file: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, encoding: 'utf8', timeout: 300_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

/** The ```ts blocks of a markdown text, with the line each starts on. */
export function tsBlocks(markdown: string): { line: number; code: string }[] {
  const blocks: { line: number; code: string }[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== '```ts') continue;
    const start = i + 1;
    while (++i < lines.length && lines[i]!.trim() !== '```');
    blocks.push({ line: start + 1, code: lines.slice(start, i).join('\n') + '\n' });
  }
  return blocks;
}

function newest(dir: string): number {
  return Math.max(...readdirSync(dir).map((f) => {
    const p = path.join(dir, f);
    const s = statSync(p);
    return s.isDirectory() ? newest(p) : s.mtimeMs;
  }));
}

/** dist/ as `npm run build` makes it, rebuilt when a source under src/ is newer (npm test builds it first). */
async function ensureBuilt(): Promise<void> {
  let built = 0;
  try {
    built = statSync(path.join(ROOT, 'dist', 'index.js')).mtimeMs;
  } catch {
    // not built yet
  }
  if (built >= newest(path.join(ROOT, 'src'))) return;
  const r = await run('npm', ['run', '-s', 'build'], ROOT);
  assert.equal(r.code, 0, `npm run build failed:\n${r.out}`);
}

/** A fetch for relative and file: URLs, reading from the working directory; others go to the real fetch. */
const FETCH_SHIM = `
import { readFile } from 'node:fs/promises';
import { pathToFileURL, fileURLToPath } from 'node:url';
const real = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const url = new URL(String(input instanceof Request ? input.url : input), pathToFileURL(process.cwd() + '/'));
  if (url.protocol !== 'file:') return real(input, init);
  try {
    return new Response(await readFile(fileURLToPath(url)));
  } catch {
    return new Response(null, { status: 404 });
  }
};
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    lib: ['ES2022', 'DOM'],
    types: ['node'],
    typeRoots: [path.join(ROOT, 'node_modules', '@types')],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    allowImportingTsExtensions: true,
  },
  include: ['block-*.ts'],
};

test('the README has TypeScript blocks, found by the parser', async () => {
  const blocks = tsBlocks(await readFile(path.join(ROOT, 'README.md'), 'utf8'));
  assert.ok(blocks.length >= 3, `${blocks.length} blocks`);
  assert.ok(blocks.some((b) => b.code.includes('DDPMPipeline.fromPretrained()')), 'the pipeline example');
  assert.deepEqual(tsBlocks('a\n```ts\nx;\n```\n```sh\ny\n```\n```ts\nz;\n```\n'), [{ line: 3, code: 'x;\n' }, { line: 9, code: 'z;\n' }]);
});

test('every ```ts block of the README type-checks and runs against the built package', { timeout: 900_000 }, async (t) => {
  const blocks = tsBlocks(await readFile(path.join(ROOT, 'README.md'), 'utf8'));
  await ensureBuilt();
  const tmp = await mkdtemp(path.join(tmpdir(), 'ddpm-readme-'));
  t.after(() => rm(tmp, { recursive: true, force: true }));
  await mkdir(path.join(tmp, 'node_modules'));
  for (const [name, target] of [['ddpm-ts', ROOT], ['onnxruntime-web', path.join(ROOT, 'node_modules', 'onnxruntime-web')]] as const) {
    await symlink(target, path.join(tmp, 'node_modules', name), 'dir');
  }
  await copyFile(path.join(ROOT, 'models', 'mnist-28', 'model.onnx'), path.join(tmp, 'model.onnx'));
  await writeFile(path.join(tmp, 'package.json'), JSON.stringify({ name: 'readme-blocks', private: true, type: 'module' }));
  await writeFile(path.join(tmp, 'tsconfig.json'), JSON.stringify(TSCONFIG));
  await writeFile(path.join(tmp, 'fetch-shim.mjs'), FETCH_SHIM);
  const files = blocks.map((b, i) => path.join(tmp, `block-${i + 1}.ts`));
  for (const [i, b] of blocks.entries()) await writeFile(files[i]!, b.code);

  await t.test('type-check (tsc, strict)', async () => {
    const r = await run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', tmp], tmp);
    const where = blocks.map((b, i) => `block-${i + 1}.ts = README.md line ${b.line}`).join('; ');
    assert.equal(r.code, 0, `the README's TypeScript does not type-check (${where}):\n${r.out}`);
  });

  const tsx = import.meta.resolve('tsx');
  for (const [i, b] of blocks.entries()) {
    await t.test(`block ${i + 1} (README.md line ${b.line}) runs`, async () => {
      const preload = b.code.includes("'ddpm-ts/browser'") ? ['--import', './fetch-shim.mjs'] : [];
      const t0 = performance.now();
      const r = await run(process.execPath, ['--import', tsx, ...preload, files[i]!], tmp);
      assert.equal(r.code, 0, `README.md line ${b.line}: exit ${r.code}\n${r.out}`);
      t.diagnostic(`block ${i + 1}: ${((performance.now() - t0) / 1000).toFixed(1)} s${r.out.trim() ? `; output: ${r.out.trim().slice(0, 300)}` : ''}`);
    });
  }
});
