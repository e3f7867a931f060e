/**
 * The built app in headless Chromium, as the web tests and `npm run bench:web` drive it: Debian's `chromium` through
 * playwright-core, kept off the network, on the app built with a given model directory and served from 127.0.0.1
 * with COOP/COEP (cross-origin isolated, so wasm may use threads).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { chromium, type BrowserContext, type LaunchOptions } from 'playwright-core';
import { build } from 'vite';
import { webConfig } from '../vite.config.ts';
import { serveStatic, type StaticServer } from './serve.ts';

export const CHROMIUM = '/usr/bin/chromium';

/** Headless, and nothing that talks to the network on its own. */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** What `npm run build:web` does after preparing the model, into `outDir`, with the model in `modelDir`. */
export async function buildApp(modelDir: string, outDir: string): Promise<void> {
  const cfg = webConfig(modelDir);
  await build({ ...cfg, configFile: false, logLevel: 'warn', build: { ...cfg.build, outDir } });
}

/** Serve the built app in `dist` and open a Chromium profile in `profileDir`. */
export async function openApp(dist: string, profileDir: string, opts: Partial<LaunchOptions> & { viewport?: { width: number; height: number }; acceptDownloads?: boolean } = {}): Promise<{ server: StaticServer; ctx: BrowserContext }> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found. Install it: apt-get install -y --no-install-recommends chromium (scripts/ensure-chromium.sh does this)`);
  const server = await serveStatic(dist);
  try {
    const ctx = await chromium.launchPersistentContext(path.resolve(profileDir), { executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, ...opts });
    return { server, ctx };
  } catch (e) {
    await server.close();
    throw e;
  }
}
