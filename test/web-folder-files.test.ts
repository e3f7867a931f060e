/**
 * The Train view's pick and drop (web/src/folder-files.ts), on fake File and FileSystemEntry objects shaped as
 * Chromium gives them: a dropped folder with a loop up into itself and one to itself (walked once, both cycles
 * named), a second link to the same subfolder and a picked folder holding the same file twice (one file kept),
 * equal names with other bytes (both kept), hidden and non-image files, and the walk's bounds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { collectDropped, collectPicked, describeCollected, type EntryLike, type FileLike } from '../web/src/folder-files.ts';

/** A File: bytes from `content`, a fixed modification time. */
function file(name: string, content: string, lastModified = 1_700_000_000_000, webkitRelativePath = ''): FileLike {
  const bytes = new TextEncoder().encode(content);
  return { name, size: bytes.length, lastModified, webkitRelativePath, arrayBuffer: async () => bytes.slice().buffer };
}

/** A file entry; a directory entry whose children are computed on each read (so that a loop can point back up). */
const fileEntry = (f: FileLike): EntryLike => ({ name: f.name, isFile: true, isDirectory: false, file: (ok: (f: FileLike) => void) => ok(f) }) as EntryLike;
function dirEntry(name: string, children: () => EntryLike[]): EntryLike {
  return {
    name,
    isFile: false,
    isDirectory: true,
    createReader() {
      let done = false;
      // in batches of two, as Chromium gives them in batches of 100
      let rest: EntryLike[] | null = null;
      return {
        readEntries(ok: (e: EntryLike[]) => void) {
          rest ??= children();
          if (done || rest.length === 0) {
            done = true;
            ok([]);
          } else ok(rest.splice(0, 2));
        },
      };
    },
  } as EntryLike;
}

test('a dropped folder with sub/loop -> .. and other/again -> itself: each image once, the cycles named', async () => {
  const imgs = Array.from({ length: 40 }, (_, i) => file(`img${i}.png`, `pixels ${i}`));
  const rootChildren = (): EntryLike[] => [
    ...imgs.map(fileEntry),
    dirEntry('sub', () => [dirEntry('loop', rootChildren)]),
    dirEntry('other', () => [dirEntry('again', rootChildren)]),
    fileEntry(file('notes.txt', 'x')),
    fileEntry(file('.DS_Store', 'x')),
  ];
  const c = await collectDropped([dirEntry('shapes', rootChildren)]);
  assert.equal(c.images.length, 40);
  assert.deepEqual(c.images.map((p) => p.path).slice(0, 2), ['shapes/img0.png', 'shapes/img1.png']);
  assert.deepEqual(c.others, { '.txt': 1 });
  assert.deepEqual(c.skipped, { 'link cycle': { count: 2, examples: ['shapes/other/again', 'shapes/sub/loop'] } });
  assert.equal(describeCollected(40, c, []), '40 images; left out: 1 other file (.txt), 2 link cycles skipped (shapes/other/again, shapes/sub/loop)');
});

test('a second link to a subfolder: its files once; same name, size and time but other bytes: both kept', async () => {
  const a = [file('x.png', 'one'), file('y.png', 'two')];
  const twin = file('x.png', 'ONE'); // same name, size and time as a/x.png, other bytes: another file
  const entries = [
    dirEntry('a', () => a.map(fileEntry)),
    dirEntry('b', () => a.map(fileEntry)), // b -> a, as the browser shows a link: the same files again
    dirEntry('c', () => [fileEntry(twin)]),
    fileEntry(file('broken.png', '')),
  ];
  const c = await collectDropped(entries);
  assert.deepEqual(c.images.map((p) => p.path), ['a/x.png', 'a/y.png', 'broken.png', 'c/x.png']);
  assert.deepEqual(c.skipped, { 'duplicate file': { count: 2, examples: ['b/x.png', 'b/y.png'] } });
  // the unreadable ones are named by the caller, which decodes
  assert.equal(
    describeCollected(3, c, [{ file: 'broken.png', reason: 'empty file' }]),
    '3 images; left out: 1 unreadable image file (broken.png: empty file), 2 second paths to files already read (b/x.png, b/y.png)',
  );
});

test('a picked folder (webkitRelativePath) with the same file twice, hidden files and others', async () => {
  const same = file('d.png', 'digit');
  const files = [
    file('d.png', 'digit', undefined, 'pick/d.png'),
    { ...same, webkitRelativePath: 'pick/link/d.png' },
    file('e.jpg', 'e', undefined, 'pick/e.jpg'),
    file('x.png', 'hidden', undefined, 'pick/.cache/x.png'),
    file('readme', 'r', undefined, 'pick/readme'),
  ];
  const c = await collectPicked(files);
  assert.deepEqual(c.images.map((p) => p.path), ['pick/d.png', 'pick/e.jpg']);
  assert.deepEqual(c.others, { '': 1 });
  assert.deepEqual(c.skipped, { 'duplicate file': { count: 1, examples: ['pick/link/d.png'] } });
});

test('bounds: entries and depth, with errors naming the limit', async () => {
  const many = dirEntry('many', () => Array.from({ length: 30 }, (_, i) => fileEntry(file(`f${i}.txt`, ''))));
  await assert.rejects(collectDropped([many], { maxEntries: 20 }), /more than 20 files and folders dropped, the limit of a folder walk \(MAX_FOLDER_ENTRIES\)/);
  // a chain of distinct folders 6 deep
  const chain = (k: number): EntryLike => dirEntry(`l${k}`, () => (k < 6 ? [chain(k + 1), fileEntry(file(`f${k}.png`, String(k)))] : []));
  assert.equal((await collectDropped([chain(0)])).images.length, 6);
  await assert.rejects(collectDropped([chain(0)], { maxDepth: 3 }), /l0\/l1\/l2\/l3\/l4 is 4 folders deep, past the limit of 3 \(MAX_FOLDER_DEPTH\)/);
  await assert.rejects(collectPicked([file('a.png', 'a'), file('b.png', 'b')], { maxEntries: 1 }), /more than 1 files picked/);
});
