/**
 * Decode cost of the largest images the decode limits accept (src/limits.ts: MAX_DECODE_PIXELS, MAX_DECODE_SIDE,
 * MAX_DECODE_FRAME_BYTES): for each kind of file at the edge of the limits, the time and peak RSS of decodeImage
 * at full size (RGB, the most memory a file can ask for: what `ddpm noise --image` and the fuzz target decode) and
 * resized to 28x28 gray (as an image folder or `ddpm eval --samples` reads it), each in a fresh process so that the
 * peak is that decode's own. The images are written to a temp dir (flat colour: they compress to a few hundred KB).
 * Prints one JSON line per decode, then a summary line with the worst.
 *
 *   node --import tsx bench/decode.ts
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp, { type Sharp } from 'sharp';
import { decodeImage, readImageHeader } from '../src/io/image.ts';

const SELF = fileURLToPath(import.meta.url);

interface Result {
  file: string;
  mode: 'full' | 'small';
  ms: number;
  peakRssMB: number;
  /** RSS of the process before the decode (node, tsx, sharp loaded) */
  baseRssMB: number;
  out: string;
}

/**
 * Peak RSS of this process in MB: VmHWM on Linux, which starts afresh at exec (getrusage's maxRSS keeps the parent's
 * RSS at the fork, so a child would report at least its parent's size), maxRSS elsewhere.
 */
function peakRssMB(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}

/** Child: decode one file, print its Result. */
async function child(file: string, mode: 'full' | 'small'): Promise<void> {
  sharp.cache(false); // as the fuzz workers: no libvips operation cache carried between decodes
  const input = new Uint8Array(readFileSync(file));
  const baseRssMB = peakRssMB();
  const t0 = performance.now();
  const img = mode === 'full' ? await decodeImage(input, { channels: 3 }) : await decodeImage(input, { channels: 1, size: 28 });
  const ms = performance.now() - t0;
  const r: Result = {
    file: path.basename(file), mode, ms: Math.round(ms), peakRssMB: Math.round(peakRssMB()),
    baseRssMB: Math.round(baseRssMB), out: `${img.width}x${img.height}x${img.channels}`,
  };
  process.stdout.write(JSON.stringify(r) + '\n');
}

/** The edge of the limits, one file per decoder path. */
async function writeImages(dir: string): Promise<string[]> {
  const bg = { r: 10, g: 200, b: 30, alpha: 0.5 };
  const img = (w: number, h: number, c: 3 | 4) => sharp({ create: { width: w, height: h, channels: c, background: bg } });
  const jobs: [string, Sharp][] = [
    // sequential PNG at 2^25 pixels: the widest, the tallest, 16-bit RGBA, palette
    ['png-rgba16-16384x2048.png', img(16384, 2048, 4).toColourspace('rgb16').png()],
    ['png-rgba16-2048x16384.png', img(2048, 16384, 4).toColourspace('rgb16').png()],
    ['png-rgba16-8192x4096.png', img(8192, 4096, 4).toColourspace('rgb16').png()],
    ['png-palette-16384x2048.png', img(16384, 2048, 4).png({ palette: true })],
    // interlaced PNG: decoded whole, at MAX_DECODE_FRAME_BYTES
    ['png-interlaced-rgba8-8192x4096.png', img(8192, 4096, 4).png({ progressive: true })],
    ['png-interlaced-graya16-8192x4096.png', img(8192, 4096, 4).toColourspace('grey16').png({ progressive: true })],
    ['png-interlaced-rgba16-4096x4096.png', img(4096, 4096, 4).toColourspace('rgb16').png({ progressive: true })],
    // JPEG: baseline streams (CMYK converts through lcms); progressive holds its coefficients
    ['jpeg-baseline-cmyk-8192x4096.jpg', img(8192, 4096, 3).toColourspace('cmyk').jpeg({ chromaSubsampling: '4:4:4' })],
    ['jpeg-baseline-444-16384x2048.jpg', img(16384, 2048, 3).jpeg({ chromaSubsampling: '4:4:4' })],
    // EXIF orientation: turned after the decode (a copy of the 8-bit result); 16384x1 turned and read at 28x28
    ['jpeg-baseline-444-8192x4096-orientation6.jpg', img(8192, 4096, 3).jpeg({ chromaSubsampling: '4:4:4' }).withMetadata({ orientation: 6 })],
    ['jpeg-baseline-16384x1-orientation6.jpg', img(16384, 1, 3).jpeg().withMetadata({ orientation: 6 })],
    ['png-interlaced-rgba8-8192x4096-orientation6.png', img(8192, 4096, 4).png({ progressive: true }).withMetadata({ orientation: 6 })],
    ['jpeg-progressive-cmyk-4096x4096.jpg', img(4096, 4096, 3).toColourspace('cmyk').jpeg({ progressive: true, chromaSubsampling: '4:4:4' })],
    ['jpeg-progressive-444-5461x4096.jpg', img(5461, 4096, 3).jpeg({ progressive: true, chromaSubsampling: '4:4:4' })],
    // WebP: decoded whole, 8 bytes a pixel counted
    ['webp-lossy-rgb-4096x4096.webp', img(4096, 4096, 3).webp()],
    ['webp-lossless-rgba-4096x4096.webp', img(4096, 4096, 4).webp({ lossless: true })],
    ['webp-lossy-rgba-16383x1024.webp', img(16383, 1024, 4).webp()],
  ];
  const files: string[] = [];
  for (const [name, p] of jobs) {
    const file = path.join(dir, name);
    await p.toFile(file);
    await readImageHeader(file); // every one is accepted: it is the edge, not past it
    if (name.includes('orientation') && (await sharp(file).metadata()).orientation !== 6) throw new Error(`${name}: no EXIF orientation written`);
    files.push(file);
  }
  return files;
}

async function parent(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ddpm-bench-decode-'));
  try {
    const files = await writeImages(dir);
    const results: Result[] = [];
    for (const file of files) {
      for (const mode of ['full', 'small'] as const) {
        const line = execFileSync(process.execPath, ['--import', 'tsx', SELF, '--child', file, mode], { encoding: 'utf8' }).trim();
        process.stdout.write(line + '\n');
        results.push(JSON.parse(line) as Result);
      }
    }
    const worst = (key: 'ms' | 'peakRssMB') => results.reduce((a, b) => (b[key] > a[key] ? b : a));
    const rss = worst('peakRssMB');
    const slow = worst('ms');
    process.stdout.write(
      JSON.stringify({
        date: new Date().toISOString().slice(0, 10), machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GB`,
        node: process.version, sharp: sharp.versions.sharp, vips: sharp.versions.vips,
        worstPeakRssMB: rss.peakRssMB, worstPeakRss: `${rss.file} ${rss.mode}`, slowestMs: slow.ms, slowest: `${slow.file} ${slow.mode}`,
      }) + '\n',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const i = process.argv.indexOf('--child');
if (i >= 0) await child(process.argv[i + 1]!, process.argv[i + 2] as 'full' | 'small');
else await parent();
