#!/usr/bin/env node
// ddpm-ts command line: runs the compiled CLI in dist/. The published package ships dist/. In a checkout of the
// repository (tsconfig.build.json beside package.json; the package does not ship it) this builds dist/ first when
// it is missing or older than a file under src/: `npm ci` runs no scripts there (.npmrc: ignore-scripts), so the
// first `npx ddpm` builds it, as `npm run build` does (TypeScript -> dist/, about 3 s).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const dist = path.join(root, 'dist');
const entry = path.join(dist, 'cli', 'bin.js');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

/** The newest modification time of the files under `dir`. */
function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds dist/ from src/ with the checkout's TypeScript: into a temporary folder, then renamed into place. */
function build() {
  process.stderr.write('ddpm: building dist/ from src/ (a checkout whose dist/ is missing or older than src/; about 3 s)\n');
  const tmp = path.join(root, `dist.${process.pid}.tmp`);
  const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', tmp], { cwd: root, stdio: ['ignore', 2, 2] });
  if (r.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    process.stderr.write(`error: building dist/ failed (tsc exit ${r.status ?? r.signal}): fix the errors above, or run \`npm run build\`\n`);
    process.exit(1);
  }
  rmSync(dist, { recursive: true, force: true });
  try {
    renameSync(tmp, dist);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another `ddpm` built it at the same time
  }
}

const checkout = existsSync(path.join(root, 'tsconfig.build.json')) && existsSync(path.join(root, 'src')) && existsSync(tsc);
if (checkout) {
  const sources = Math.max(newest(path.join(root, 'src')), ...['tsconfig.json', 'tsconfig.build.json'].map((f) => statSync(path.join(root, f)).mtimeMs));
  if (!existsSync(entry) || sources > statSync(entry).mtimeMs) build();
}

if (existsSync(entry)) {
  await import(pathToFileURL(entry).href);
} else {
  process.stderr.write('error: dist/ is missing: run `npm run build` in the ddpm-ts checkout\n');
  process.exitCode = 1;
}
