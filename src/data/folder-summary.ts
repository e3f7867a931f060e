/**
 * What a walk of an image folder takes (the image extensions) and leaves out, by reason, and the words for it in the
 * folder's summary line. Shared by the CLI's walk (folder-walk.ts) and the page's (web/src/folder-files.ts), so both
 * count and say it alike. Pure module (no node:*).
 */

/** The files read as images, by extension (lower case, with the dot). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.webp'];

/** Paths the walk left out for one reason: how many, and the first few (relative to the root, in walk order). */
export interface WalkSkip {
  count: number;
  examples: string[];
}

/** Why an entry was left out; the keys of FolderWalk.skipped. */
export type WalkSkipReason =
  | 'duplicate file'
  | 'link cycle'
  | 'folder linked twice'
  | 'FIFO'
  | 'socket'
  | 'device'
  | 'dangling link'
  | 'unreadable folder'
  | 'folder named like an image';

/** Entries left out, by reason (only the reasons that occurred). */
export type WalkSkips = Partial<Record<WalkSkipReason, WalkSkip>>;

/** Paths named per reason; the rest are counted. */
export const NAMED_PER_REASON = 3;

/** Count one more entry left out for `reason`, naming it while fewer than NAMED_PER_REASON are named. */
export function addSkip(skips: WalkSkips, reason: WalkSkipReason, what: string): void {
  const s = (skips[reason] ??= { count: 0, examples: [] });
  s.count++;
  if (s.examples.length < NAMED_PER_REASON) s.examples.push(what);
}

/** The words of one reason with its count, e.g. `2 link cycles skipped (sub/loop -> .., other/again -> /data/x)`. */
export function describeSkip(reason: WalkSkipReason, s: WalkSkip): string {
  const plural: Record<WalkSkipReason, [string, string]> = {
    'duplicate file': ['second path to a file already read', 'second paths to files already read'],
    'link cycle': ['link cycle skipped', 'link cycles skipped'],
    'folder linked twice': ['link to a folder already read', 'links to folders already read'],
    FIFO: ['FIFO', 'FIFOs'],
    socket: ['socket', 'sockets'],
    device: ['device file', 'device files'],
    'dangling link': ['dangling link', 'dangling links'],
    'unreadable folder': ['unreadable folder', 'unreadable folders'],
    'folder named like an image': ['folder named like an image, read as a folder', 'folders named like images, read as folders'],
  };
  const [one, many] = plural[reason];
  const more = s.count > s.examples.length ? `, ${(s.count - s.examples.length).toLocaleString('en-US')} more` : '';
  return `${s.count.toLocaleString('en-US')} ${s.count === 1 ? one : many} (${s.examples.join(', ')}${more})`;
}

/**
 * The end of a folder's summary line: everything left out, by reason, so that the counts add up to what the folder
 * holds (`; left out: 3 unreadable image files (zero.png: empty file; ...), 1 other file (.txt), 1 link cycle skipped
 * (sub/loop -> ..)`), or '' when nothing was.
 */
export function describeLeftOut(unreadable: readonly { file: string; reason: string }[], others: Record<string, number>, skips: WalkSkips): string {
  const count = (n: number) => n.toLocaleString('en-US');
  const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();
  const left: string[] = [];
  if (unreadable.length > 0) {
    const named = unreadable.slice(0, NAMED_PER_REASON).map(({ file, reason }) => `${file}: ${oneLine(reason)}`);
    const more = unreadable.length > NAMED_PER_REASON ? `, ${count(unreadable.length - NAMED_PER_REASON)} more` : '';
    left.push(`${count(unreadable.length)} unreadable image file${unreadable.length === 1 ? '' : 's'} (${named.join('; ')}${more})`);
  }
  const n = Object.values(others).reduce((a, b) => a + b, 0);
  if (n > 0) left.push(`${count(n)} other file${n === 1 ? '' : 's'} (${Object.keys(others).sort().map((e) => e || 'no extension').join(', ')})`);
  let also = '';
  for (const [reason, skip] of Object.entries(skips) as [WalkSkipReason, WalkSkip][]) {
    if (reason === 'folder named like an image') also = `; ${describeSkip(reason, skip)}`;
    else left.push(describeSkip(reason, skip));
  }
  return `${left.length > 0 ? `; left out: ${left.join(', ')}` : ''}${also}`;
}
