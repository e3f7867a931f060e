/**
 * The Train view's images from picked files, a picked folder or a drop, counted as `ddpm train --data` counts a
 * folder (src/data/folder-walk.ts), as far as the browser tells:
 *
 * - The browser shows no links, devices or inodes: a file reached twice (through a link, or a second link to the
 *   same folder) arrives as two Files. Two Files with the same name, size and modification time whose bytes are
 *   equal are one file: the first path in sorted order keeps it, the other is a 'duplicate file'.
 * - A dropped folder is walked through its entries (webkitGetAsEntry). A folder whose listing (names and kinds, and
 *   the sizes and times of its files) equals one of its ancestors' is that ancestor reached again through a link:
 *   a 'link cycle', not walked. Without this a loop would be walked until the bounds stop it, and two loops branch
 *   at every level.
 * - Depth and entries are bounded as the CLI bounds them (MAX_FOLDER_DEPTH, MAX_FOLDER_ENTRIES), with an error
 *   naming the limit.
 * - Hidden files and folders are left out; files that are not PNG, JPEG or WebP by name are 'other files'.
 *
 * DOM-free (the entry and file types below are the parts of the File and FileSystemEntry APIs used), so the tests
 * run it in Node on fake entries.
 */
import { IMAGE_EXTENSIONS, addSkip, describeLeftOut, type WalkSkips } from '../../src/data/folder-summary.ts';
import { MAX_FOLDER_DEPTH, MAX_FOLDER_ENTRIES } from '../../src/limits.ts';

/** The parts of a File used here. */
export interface FileLike {
  readonly name: string;
  readonly size: number;
  readonly lastModified: number;
  /** Set for the files of a picked folder (`<input webkitdirectory>`): 'folder/sub/name.png'. */
  readonly webkitRelativePath?: string;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** The parts of a FileSystemEntry (drag and drop) used here. */
export interface EntryLike {
  readonly name: string;
  readonly isFile: boolean;
  readonly isDirectory: boolean;
}
export interface FileEntryLike extends EntryLike {
  file(ok: (f: FileLike) => void, fail?: (e: unknown) => void): void;
}
export interface DirEntryLike extends EntryLike {
  createReader(): { readEntries(ok: (entries: EntryLike[]) => void, fail?: (e: unknown) => void): void };
}

/** One file to read, under the path the user sees (relative to what was picked or dropped). */
export interface PathedFile {
  path: string;
  file: FileLike;
}

export interface CollectedFiles {
  /** Image files by name, each a distinct file, sorted by path. */
  images: PathedFile[];
  /** Other files, counted by extension in lower case ('' for none). */
  others: Record<string, number>;
  /** Entries left out, by reason. */
  skipped: WalkSkips;
}

export interface CollectLimits {
  maxDepth?: number;
  maxEntries?: number;
}

const byPath = (a: PathedFile, b: PathedFile) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
const extension = (name: string) => {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot).toLowerCase() : '';
};
const isImageName = (name: string) => IMAGE_EXTENSIONS.includes(extension(name));
const hidden = (path: string) => path.split('/').some((p) => p.startsWith('.'));

/** Sort out picked files (a multiple pick, or a folder pick whose files carry webkitRelativePath). */
export async function collectPicked(files: readonly FileLike[], limits: CollectLimits = {}): Promise<CollectedFiles> {
  const maxEntries = limits.maxEntries ?? MAX_FOLDER_ENTRIES;
  if (files.length > maxEntries) throw new Error(`more than ${maxEntries.toLocaleString('en-US')} files picked, the limit of a folder walk (MAX_FOLDER_ENTRIES)`);
  const found: PathedFile[] = [];
  const others: Record<string, number> = {};
  for (const file of files) {
    const path = file.webkitRelativePath || file.name;
    if (hidden(path)) continue;
    if (isImageName(file.name)) found.push({ path, file });
    else others[extension(file.name)] = (others[extension(file.name)] ?? 0) + 1;
  }
  const skipped: WalkSkips = {};
  return { images: await dedupe(found, skipped), others, skipped };
}

/** Walk dropped entries (DataTransferItem.webkitGetAsEntry() of each item). */
export async function collectDropped(roots: readonly EntryLike[], limits: CollectLimits = {}): Promise<CollectedFiles> {
  const maxDepth = limits.maxDepth ?? MAX_FOLDER_DEPTH;
  const maxEntries = limits.maxEntries ?? MAX_FOLDER_ENTRIES;
  const found: PathedFile[] = [];
  const others: Record<string, number> = {};
  const skipped: WalkSkips = {};
  let entries = 0;

  const fileOf = (e: EntryLike) => new Promise<FileLike>((ok, fail) => (e as FileEntryLike).file(ok, fail));
  async function list(d: EntryLike): Promise<EntryLike[]> {
    const reader = (d as DirEntryLike).createReader();
    const all: EntryLike[] = [];
    // readEntries gives a batch at a time (100 in Chromium) until an empty one
    for (;;) {
      const batch = await new Promise<EntryLike[]>((ok, fail) => reader.readEntries(ok, fail));
      if (batch.length === 0) return all;
      entries += batch.length;
      if (entries > maxEntries) throw new Error(`more than ${maxEntries.toLocaleString('en-US')} files and folders dropped, the limit of a folder walk (MAX_FOLDER_ENTRIES)`);
      all.push(...batch);
    }
  }
  /** A folder's listing as the browser shows it: names, kinds, and the size and time of each file. */
  async function signature(children: EntryLike[]): Promise<string> {
    const parts = await Promise.all(
      children.map(async (c) => {
        if (!c.isFile) return `d:${c.name}`;
        const f = await fileOf(c).catch(() => undefined);
        return `f:${c.name}:${f?.size ?? '?'}:${f?.lastModified ?? '?'}`;
      }),
    );
    return parts.sort().join('\n');
  }
  async function walk(e: EntryLike, path: string, depth: number, ancestors: string[]): Promise<void> {
    if (e.name.startsWith('.')) return;
    if (e.isFile) {
      if (!isImageName(e.name)) {
        others[extension(e.name)] = (others[extension(e.name)] ?? 0) + 1;
        return;
      }
      try {
        found.push({ path, file: await fileOf(e) });
      } catch {
        addSkip(skipped, 'dangling link', path); // an entry the browser lists but cannot open
      }
      return;
    }
    if (!e.isDirectory) return;
    if (depth > maxDepth) throw new Error(`${path} is ${depth} folders deep, past the limit of ${maxDepth} (MAX_FOLDER_DEPTH)`);
    let children: EntryLike[];
    try {
      children = await list(e);
    } catch (err) {
      if (err instanceof Error && /limit of a folder walk/.test(err.message)) throw err;
      addSkip(skipped, 'unreadable folder', path);
      return;
    }
    const sig = await signature(children);
    if (ancestors.includes(sig)) {
      addSkip(skipped, 'link cycle', path);
      return;
    }
    if (isImageName(e.name)) addSkip(skipped, 'folder named like an image', path);
    const sorted = [...children].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const c of sorted) await walk(c, `${path}/${c.name}`, depth + 1, [...ancestors, sig]);
  }
  for (const r of [...roots].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    entries++;
    await walk(r, r.name, 0, []);
  }
  return { images: await dedupe(found, skipped), others, skipped };
}

/** One entry per file: same name, size and time and equal bytes is the same file; the first path (sorted) keeps it. */
async function dedupe(found: PathedFile[], skipped: WalkSkips): Promise<PathedFile[]> {
  found.sort(byPath);
  const byKey = new Map<string, PathedFile[]>();
  const kept: PathedFile[] = [];
  for (const p of found) {
    const key = `${p.file.name}\u0000${p.file.size}\u0000${p.file.lastModified}`;
    const same = byKey.get(key) ?? [];
    let dup = false;
    for (const q of same) if (await sameBytes(p.file, q.file)) dup = true;
    if (dup) addSkip(skipped, 'duplicate file', p.path);
    else {
      same.push(p);
      byKey.set(key, same);
      kept.push(p);
    }
  }
  return kept;
}

async function sameBytes(a: FileLike, b: FileLike): Promise<boolean> {
  if (a === b) return true;
  const [x, y] = await Promise.all([a.arrayBuffer(), b.arrayBuffer()]);
  if (x.byteLength !== y.byteLength) return false;
  const u = new Uint8Array(x);
  const v = new Uint8Array(y);
  for (let i = 0; i < u.length; i++) if (u[i] !== v[i]) return false;
  return true;
}

/** The summary of what was read: `5 images; left out: 1 unreadable image file (broken.png: ...), 1 other file (.txt)`. */
export function describeCollected(n: number, c: CollectedFiles, unreadable: readonly { file: string; reason: string }[]): string {
  return `${n.toLocaleString('en-US')} image${n === 1 ? '' : 's'}${describeLeftOut(unreadable, c.others, c.skipped)}`;
}
