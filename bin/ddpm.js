#!/usr/bin/env node
// ddpm-ts command line: runs the compiled CLI in dist/ (`npm run build`; `npm ci` and `npm pack` build it).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/bin.js', import.meta.url);
if (existsSync(entry)) {
  await import(entry.href);
} else {
  process.stderr.write('error: dist/ is missing: run `npm run build` in the ddpm-ts checkout\n');
  process.exitCode = 1;
}
