/**
 * Vite config of the web app. `npm run web` serves it, `npm run build:web` builds it to web/dist;
 * both first run web/scripts/prepare-model.ts, which puts the model into web/.model/.
 *
 * Two sets of files are not part of the module graph; the plugin below serves them (dev) and
 * copies them into the build:
 * - `ort/`: onnxruntime-web's ESM bundles and their WebAssembly binaries, from node_modules: the JSEP build
 *   (WebGPU and wasm) and the wasm-only build, which the sampling worker loads when there is no WebGPU (half the
 *   size; web/src/ort-init.ts). The workers import a bundle at run time instead of having Vite bundle it, so that
 *   the bundle's `import.meta.url` stays its own: its pthread workers (multi-threaded wasm) start from that URL.
 * - `model/`: `model.onnx` + `model.json` from the model directory (web/.model/ by default), its unconditional
 *   companion `model-any.onnx` when there is one, and the Train view's digits `mnist-train.safetensors.gz`.
 * Both servers send COOP/COEP so the page is cross-origin isolated (SharedArrayBuffer, i.e. wasm threads).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin, type UserConfig } from 'vite';
import { ISOLATION_HEADERS, MIME } from './scripts/serve.ts';

const WEB = path.dirname(fileURLToPath(import.meta.url));
const ORT_DIST = path.resolve(WEB, '..', 'node_modules', 'onnxruntime-web', 'dist');

/** The onnxruntime-web files the app loads: the JSEP build (WebGPU + wasm EPs) and the wasm-only build; their glue code is inside the bundles. */
export const ORT_FILES = ['ort.bundle.min.mjs', 'ort-wasm-simd-threaded.jsep.wasm', 'ort.wasm.bundle.min.mjs', 'ort-wasm-simd-threaded.wasm'] as const;
export const MODEL_FILES = ['model.onnx', 'model.json', 'mnist-train.safetensors.gz'] as const;
/** Model files copied when the model directory has them. */
export const OPTIONAL_MODEL_FILES = ['model-any.onnx'] as const;

function staticFiles(modelDir: string): Plugin {
  const files = (): Map<string, string> => {
    if (!existsSync(path.join(modelDir, 'model.onnx'))) {
      throw new Error(`web: no model in ${modelDir}: run web/scripts/prepare-model.ts (npm run web:model -- runs/<name>/checkpoint)`);
    }
    return new Map([
      ...ORT_FILES.map((f) => [`ort/${f}`, path.join(ORT_DIST, f)] as const),
      ...MODEL_FILES.map((f) => [`model/${f}`, path.join(modelDir, f)] as const),
      ...OPTIONAL_MODEL_FILES.filter((f) => existsSync(path.join(modelDir, f))).map((f) => [`model/${f}`, path.join(modelDir, f)] as const),
    ]);
  };
  return {
    name: 'ddpm-ts:static-files',
    configureServer(server) {
      const map = files();
      server.middlewares.use((req, res, next) => {
        const file = map.get((req.url ?? '').split('?')[0]!.replace(/^\//, ''));
        if (!file) return next();
        res.setHeader('Content-Type', MIME[path.extname(file)] ?? 'application/octet-stream');
        for (const [k, v] of Object.entries(ISOLATION_HEADERS)) res.setHeader(k, v);
        res.end(readFileSync(file));
      });
    },
    generateBundle() {
      for (const [fileName, file] of files()) this.emitFile({ type: 'asset', fileName, source: readFileSync(file) });
    },
  };
}

/** The config, serving the model in `modelDir` (the test builds with a model of its own). */
export function webConfig(modelDir = path.join(WEB, '.model')): UserConfig {
  return {
    root: WEB,
    base: './',
    publicDir: false,
    plugins: [staticFiles(modelDir)],
    worker: { format: 'es' },
    build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
    server: { headers: ISOLATION_HEADERS, host: '127.0.0.1' },
    preview: { headers: ISOLATION_HEADERS, host: '127.0.0.1' },
  };
}

export default defineConfig(webConfig());
