/**
 * A small static file server for the built app (web/dist), with the headers that make the page
 * cross-origin isolated (COOP/COEP, so wasm may use threads) and the MIME types it needs
 * (application/wasm for streaming compilation, text/javascript for module workers).
 *
 *   node --import tsx web/scripts/serve.ts [DIR] [PORT]     (default web/dist, 127.0.0.1:4173)
 */
import { createReadStream, promises as fsp } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  // served as bytes (no Content-Encoding): the page unpacks it itself
  '.gz': 'application/octet-stream',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8',
};

export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

export interface StaticServer {
  /** e.g. http://127.0.0.1:34567/ */
  url: string;
  close(): Promise<void>;
}

/** Serve `dir` on 127.0.0.1 (`port` 0 picks a free one). GET and HEAD only; `/` is index.html. */
export async function serveStatic(dir: string, port = 0): Promise<StaticServer> {
  const root = path.resolve(dir);
  const server = http.createServer(async (req, res) => {
    const send = (status: number, text: string) => {
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...ISOLATION_HEADERS });
      res.end(text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed');
    let rel: string;
    try {
      rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      return send(400, 'bad url');
    }
    if (rel.endsWith('/')) rel += 'index.html';
    const file = path.join(root, rel);
    if (file !== root && !file.startsWith(root + path.sep)) return send(403, 'forbidden');
    const stat = await fsp.stat(file).catch(() => null);
    if (!stat?.isFile()) return send(404, `not found: ${rel}`);
    res.writeHead(200, {
      'Content-Type': MIME[path.extname(file)] ?? 'application/octet-stream',
      'Content-Length': stat.size,
      'Cache-Control': 'no-cache',
      ...ISOLATION_HEADERS,
    });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const { port: actual } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${actual}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist');
  const s = await serveStatic(dir, Number(process.argv[3] ?? 4173));
  console.log(`serving ${dir} at ${s.url} (Ctrl-C to stop)`);
}
