/**
 * The walk of an image folder: every regular file under the root once, whatever links and special files it holds.
 *
 * - Files are identified by device and inode (a hard link, a link to a file, or a file reached through a linked
 *   folder is the same file): the first path in walk order keeps it, later ones are counted as duplicates.
 * - The tree itself is walked first, without following any link; links are followed afterwards, in sorted order
 *   (a queue: links found inside a linked folder join it). So a file reachable both directly and through a link
 *   keeps its direct path, and a class folder (data/folder-classes.ts) keeps its images.
 * - A link to a folder that holds the link (`sub/loop -> ..`, `other/again -> <root>`) is a cycle: skipped and
 *   named. A link to a folder already walked (a second link to the same subfolder) is skipped and counted.
 *   Links to files and folders outside the tree are followed, once.
 * - FIFOs, sockets and devices are never opened (a FIFO named x.png would block a reader forever); dangling links,
 *   unreadable folders and folders named like images are counted with their reason.
 * - Memory is per image, not per entry: other files are counted by extension only, and directories are read as a
 *   stream (fs.opendir), so a folder of a million non-image files holds only the counts. The depth and the number
 *   of entries read are bounded (FolderWalkLimits), with an error that names the limit.
 *
 * Hidden files and folders (name starting with '.') are left out, as torchvision's ImageFolder leaves them out.
 */
import { promises as fsp, type Dirent, type Stats } from 'node:fs';
import * as path from 'node:path';
import { sniffPath, wrongKindMessage } from '../io/sniff-file.ts';
import { MAX_FOLDER_DEPTH, MAX_FOLDER_ENTRIES } from '../limits.ts';
import { addSkip, type WalkSkipReason, type WalkSkips } from './folder-summary.ts';

export { describeSkip, type WalkSkip, type WalkSkipReason, type WalkSkips } from './folder-summary.ts';

export interface FolderWalkLimits {
  /** Folder levels below the root (default MAX_FOLDER_DEPTH). */
  maxDepth?: number;
  /** Directory entries read in all, hidden ones included (default MAX_FOLDER_ENTRIES). */
  maxEntries?: number;
}

export interface FolderWalk {
  /** Image files (by extension), each a distinct regular file, relative to the root, sorted by code unit. */
  images: string[];
  /** Other regular files (not hidden, another extension), counted by extension in lower case ('' for none). */
  others: Record<string, number>;
  /** The first other file met (for a message when there are no images). */
  firstOther?: string;
  /** Entries left out, by reason (only the reasons that occurred). */
  skipped: WalkSkips;
}

/** A walk bound was hit, or the root cannot be walked; the message names the limit and how to raise it. */
export class FolderWalkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FolderWalkError';
  }
}

const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** `inside` is `dir` or below it (both real, absolute paths). */
function within(inside: string, dir: string): boolean {
  return inside === dir || inside.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep);
}

function specialKind(s: Dirent | Stats): 'FIFO' | 'socket' | 'device' {
  return s.isFIFO() ? 'FIFO' : s.isSocket() ? 'socket' : 'device';
}

/**
 * Walk `root` (see the module comment). A missing root or one that is not a directory is a FolderWalkError; so is a
 * walk past `limits`.
 */
export async function walkImageFolder(root: string, extensions: readonly string[], limits: FolderWalkLimits = {}): Promise<FolderWalk> {
  const exts = new Set(extensions.map((e) => e.toLowerCase()));
  const maxDepth = limits.maxDepth ?? MAX_FOLDER_DEPTH;
  const maxEntries = limits.maxEntries ?? MAX_FOLDER_ENTRIES;
  const isImageName = (name: string) => exts.has(path.extname(name).toLowerCase());

  let realRoot: string;
  try {
    if (!(await fsp.stat(root)).isDirectory()) {
      const kind = await sniffPath(root); // an image or a checkpoint given as the folder: say which
      throw new FolderWalkError(kind === null || kind === 'unknown' ? `image folder ${root} is not a directory` : wrongKindMessage(`image folder ${root}`, kind, 'a directory'));
    }
    realRoot = await fsp.realpath(root);
  } catch (err) {
    if (err instanceof FolderWalkError) throw err;
    throw new FolderWalkError(`image folder ${root} cannot be read: ${(err as Error).message}`, { cause: err });
  }

  const skipped: WalkSkips = {};
  const skip = (reason: WalkSkipReason, what: string) => addSkip(skipped, reason, what);
  const others: Record<string, number> = {};
  let firstOther: string | undefined;
  const other = (rel: string) => {
    const ext = path.extname(rel).toLowerCase();
    others[ext] = (others[ext] ?? 0) + 1;
    firstOther ??= rel;
  };
  // image candidates in walk order (direct paths first, then through links); deduplicated by inode at the end
  const candidates: string[] = [];
  // the real path of every folder walked, so that a second link to one is not walked again
  const walkedDirs = new Set<string>();
  // links met, followed once the tree itself is walked: [path relative to the root, depth, real path of its folder]
  const links: [rel: string, depth: number, realParent: string][] = [];
  let entries = 0;

  /** Read one folder (real path `real`, shown as `rel`), queueing its links and recursing into its subfolders. */
  async function walkDir(rel: string, real: string, depth: number): Promise<void> {
    walkedDirs.add(real);
    let dir;
    try {
      dir = await fsp.opendir(path.join(root, rel));
    } catch (err) {
      if (rel === '') throw new FolderWalkError(`image folder ${root} cannot be read: ${(err as Error).message}`, { cause: err });
      skip('unreadable folder', `${rel} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      return;
    }
    const subdirs: string[] = [];
    try {
      for await (const e of dir) {
        if (++entries > maxEntries) {
          throw new FolderWalkError(
            `image folder ${root}: more than ${maxEntries.toLocaleString('en-US')} entries (files and folders) under it, the limit of the walk ` +
              `(--folder-max-entries raises it; library: maxEntries)`,
          );
        }
        if (e.name.startsWith('.')) continue;
        const r = rel === '' ? e.name : path.join(rel, e.name);
        if (e.isSymbolicLink()) links.push([r, depth, real]);
        else if (e.isDirectory()) subdirs.push(e.name);
        else if (e.isFile()) (isImageName(e.name) ? candidates.push(r) : other(r));
        else skip(specialKind(e), r);
      }
    } catch (err) {
      if (err instanceof FolderWalkError) throw err;
      skip('unreadable folder', `${rel || '.'} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    for (const name of subdirs.sort(byCodeUnit)) await enterDir(rel === '' ? name : path.join(rel, name), path.join(real, name), depth + 1);
  }

  async function enterDir(rel: string, real: string, depth: number): Promise<void> {
    if (depth > maxDepth) {
      throw new FolderWalkError(
        `image folder ${root}: ${rel} is ${depth} folders deep, past the limit of ${maxDepth} (--folder-max-depth raises it; library: maxDepth)`,
      );
    }
    if (isImageName(rel)) skip('folder named like an image', rel);
    await walkDir(rel, real, depth);
  }

  // 1. The tree itself, no link followed (its files in sorted order: which of two hard links keeps the file does
  //    not depend on the order the file system lists them in).
  await walkDir('', realRoot, 0);
  candidates.sort(byCodeUnit);

  // 2. The links, in sorted order; those inside linked folders join the queue.
  const linkOrder = (a: (typeof links)[number], b: (typeof links)[number]) => a[1] - b[1] || byCodeUnit(a[0], b[0]);
  links.sort(linkOrder);
  for (let i = 0; i < links.length; i++) {
    const [rel, depth, realParent] = links[i]!;
    const abs = path.join(root, rel);
    let st: Stats;
    let target: string;
    try {
      st = await fsp.stat(abs);
      target = await fsp.realpath(abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') skip('link cycle', `${rel} -> ${await fsp.readlink(abs).catch(() => '?')}`);
      else skip('dangling link', `${rel}${code === 'ENOENT' ? '' : ` (${code ?? (err as Error).message})`}`);
      continue;
    }
    if (st.isDirectory()) {
      if (within(realParent, target)) skip('link cycle', `${rel} -> ${await fsp.readlink(abs).catch(() => target)}`);
      else if (walkedDirs.has(target)) skip('folder linked twice', rel);
      else {
        const before = links.length;
        await enterDir(rel, target, depth + 1);
        if (links.length > before) {
          const queued = links.splice(before).sort(linkOrder);
          links.push(...queued);
        }
      }
    } else if (st.isFile()) {
      if (isImageName(rel)) candidates.push(rel);
      else other(rel);
    } else skip(specialKind(st), rel);
  }

  // 3. One path per file: the first in walk order keeps it.
  const ids = await mapLimit(candidates, 16, async (rel) => {
    const s = await fsp.stat(path.join(root, rel)).catch(() => undefined);
    // a file gone since it was listed keeps its path: reading it later gives the reason
    return s === undefined ? `missing:${rel}` : `${s.dev}:${s.ino}`;
  });
  const seen = new Set<string>();
  const images: string[] = [];
  candidates.forEach((rel, i) => {
    if (seen.has(ids[i]!)) skip('duplicate file', rel);
    else {
      seen.add(ids[i]!);
      images.push(rel);
    }
  });
  return { images: images.sort(byCodeUnit), others, firstOther, skipped };
}

/** `f` over `items` with at most `limit` calls in flight; results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
