/**
 * Choosing a starting image x_0: one of the shipped MNIST test digits (a row of buttons) or an uploaded picture,
 * at a given size and channel count. The forward-process panel and the Edit panel each have one.
 */
import digitsAsset from './assets/mnist-test-digits.json';
import { bytesToFloat, decodeImage, drawImage, grayCanvas, type DecodeOptions } from './image.ts';

/** The side of the shipped digits (MNIST). */
export const DIGIT_SIZE = 28;

function base64Bytes(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

export interface PickerOptions {
  /** ids of the digit-button container, the file input and the invert checkbox */
  ids: { digits: string; upload: string; invert: string };
  size: number;
  channels: 1 | 3;
  /** transparent areas of an upload (see {@link DecodeOptions}) */
  background: DecodeOptions['background'];
  /** a new x_0: 8-bit pixels (C, H, W), and what it is */
  onPick: (pixels: Uint8Array, caption: string) => void;
  /** an upload that is not an image */
  onError: (message: string) => void;
}

export class ImagePicker {
  private readonly upload: HTMLInputElement;
  private readonly invert: HTMLInputElement;
  private readonly buttons: HTMLButtonElement[];

  /** Draws the digit buttons and picks the first digit (on the next microtask). */
  constructor(private readonly opts: PickerOptions) {
    const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
    this.upload = $<HTMLInputElement>(opts.ids.upload);
    this.invert = $<HTMLInputElement>(opts.ids.invert);
    this.buttons = digitsAsset.digits.map((d) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.title = `MNIST test #${d.index} (label ${d.label})`;
      b.dataset.index = String(d.index);
      const px = base64Bytes(d.pixels);
      const c = document.createElement('canvas');
      drawImage(c, bytesToFloat(px), DIGIT_SIZE, 1);
      b.append(c);
      b.onclick = () => void this.useDigit(b, px, `MNIST test #${d.index} (a ${d.label})`);
      return b;
    });
    $(opts.ids.digits).replaceChildren(...this.buttons);
    queueMicrotask(() => this.buttons[0]?.click());
    this.upload.onchange = () => void this.useFile(this.upload.files?.[0], 'auto');
    this.invert.onchange = () => void this.useFile(this.upload.files?.[0], this.invert.checked);
  }

  private press(b: HTMLButtonElement | null): void {
    for (const o of this.buttons) o.setAttribute('aria-pressed', String(o === b));
  }

  private async useDigit(b: HTMLButtonElement, px: Uint8Array, caption: string): Promise<void> {
    this.press(b);
    // invert applies to an uploaded image only
    this.upload.value = '';
    this.invert.checked = false;
    const { size, channels } = this.opts;
    // the model's own format: the bytes as they are; another size or RGB: resized (and gray replicated) like an upload
    const pixels =
      size === DIGIT_SIZE && channels === 1 ? px : (await decodeImage(grayCanvas(px, DIGIT_SIZE), { size, channels, background: 'black', invert: false })).pixels;
    this.opts.onPick(pixels, caption);
  }

  private async useFile(file: File | undefined, invert: boolean | 'auto'): Promise<void> {
    if (!file) return;
    const { size, channels, background } = this.opts;
    try {
      const { pixels, inverted } = await decodeImage(file, { size, channels, background, invert });
      this.invert.checked = inverted;
      this.press(null);
      this.opts.onPick(pixels, `${file.name}${inverted ? ' (inverted)' : ''}`);
    } catch (e) {
      console.warn(`could not read ${file.name}:`, e);
      this.opts.onError(`could not read ${file.name} as an image`);
    }
  }
}
