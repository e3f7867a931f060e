// Class labels of an image folder laid out as torchvision's ImageFolder expects: root/<class>/<image> (images may sit
// deeper inside a class folder). The classes are the subfolders of root sorted by name (Python's sorted(), i.e. by
// code point) and class i is the i-th, so a model trained here and one trained with ImageFolder on the same
// folder number their classes alike. As ImageFolder, a class folder without images is an error; unlike it, hidden
// folders (name starting with '.') are no classes (the folder loader skips them) and an image directly in root is
// an error rather than silently left out.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { MAX_CLASSES } from '../limits.ts';
import { ImageFolderError, imageFolderDataset, type ImageFolderData } from './folder.ts';
import type { Dataset } from './loader.ts';

/** Order of Python's sorted() on str: by code point (JS's < compares UTF-16 code units). */
export function compareCodePoints(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0)!);
  const y = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/** The class folders of `root`: its subfolders (symlinks followed), hidden ones left out, sorted as ImageFolder sorts them. */
export async function folderClassNames(root: string): Promise<string[]> {
  let entries;
  try {
    entries = await fsp.readdir(root, { withFileTypes: true });
  } catch (err) {
    throw new ImageFolderError(`image folder ${root} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  const names: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const isDir = e.isSymbolicLink() ? ((await fsp.stat(path.join(root, e.name)).catch(() => undefined))?.isDirectory() ?? false) : e.isDirectory();
    if (isDir) names.push(e.name);
  }
  return names.sort(compareCodePoints);
}

/**
 * The label of each image of a loaded folder (`data.files` are paths relative to `root`) and the class names.
 * Throws an ImageFolderError when root has no class folders, more than MAX_CLASSES, a class folder holds no
 * (decodable) image, or an image is not inside a class folder.
 */
export async function folderLabels(root: string, data: Pick<ImageFolderData, 'files'>): Promise<{ labels: Uint8Array; classNames: string[] }> {
  const classNames = await folderClassNames(root);
  const layout = `class-conditional training reads ${root}/<class>/<image> (torchvision's ImageFolder layout)`;
  if (classNames.length === 0) throw new ImageFolderError(`${layout}, but ${root} has no subfolders`);
  if (classNames.length > MAX_CLASSES) throw new ImageFolderError(`${root} has ${classNames.length} class folders, over the limit of ${MAX_CLASSES} (MAX_CLASSES)`);
  const index = new Map(classNames.map((c, i) => [c, i]));
  const labels = new Uint8Array(data.files.length);
  const counts = new Array<number>(classNames.length).fill(0);
  data.files.forEach((f, i) => {
    const parts = f.split(path.sep);
    const k = parts.length > 1 ? index.get(parts[0]!) : undefined;
    if (k === undefined) throw new ImageFolderError(`${layout}; ${path.join(root, f)} is not inside a class folder`);
    labels[i] = k;
    counts[k]!++;
  });
  const empty = classNames.filter((_, k) => counts[k] === 0);
  if (empty.length > 0) {
    const list = empty.slice(0, 5).map((c) => `'${c}'`).join(', ') + (empty.length > 5 ? `, ... (${empty.length})` : '');
    throw new ImageFolderError(`class folder(s) ${list} of ${root} hold no usable image; every class needs at least one`);
  }
  return { labels, classNames };
}

/** A loaded folder as a labelled loader Dataset (for `ddpm train --class-cond`). */
export async function labelledFolderDataset(root: string, data: ImageFolderData): Promise<Dataset> {
  const { labels, classNames } = await folderLabels(root, data);
  return { ...imageFolderDataset(data), labels, classNames };
}
