/**
 * The walk of an image folder (src/data/folder-walk.ts): every regular file once, whatever links and special files
 * the folder holds; cycles and duplicates named in the one summary line, special files never opened, the walk
 * bounded. Each case checks the counts and the images trained on.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import { chmod, link, mkdir, mkdtemp, readdir, rm, symlink, writeFile, chown } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { walkImageFolder, FolderWalkError } from '../src/data/folder-walk.ts';
import { IMAGE_EXTENSIONS, inspectImageFolder, loadImageFolder } from '../src/data/folder.ts';
import { runCli } from './cli-helpers.ts';

let dir: string;

/** A 4x4 PNG whose pixels are all `v`. */
const png = (file: string, v: number) => sharp(Buffer.alloc(4 * 4 * 3, v), { raw: { width: 4, height: 4, channels: 3 } }).png().toFile(file);

/** `n` PNGs named img<i>.png in `folder`, pixel value i. */
async function pngs(folder: string, n: number, from = 0): Promise<void> {
  await mkdir(folder, { recursive: true });
  for (let i = from; i < from + n; i++) await png(path.join(folder, `img${i}.png`), i);
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-walk-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const walk = (root: string, limits = {}) => walkImageFolder(root, IMAGE_EXTENSIONS, limits);

test('a loop link up into the folder and one to the folder itself: each image once, both cycles named', async () => {
  // the folders: 40 PNGs with sub/loop -> .. (1,640 images before) and other/again -> <root> (out of memory with both)
  const root = path.join(dir, 'loops');
  await pngs(root, 40);
  await mkdir(path.join(root, 'sub'));
  await mkdir(path.join(root, 'other'));
  await symlink('..', path.join(root, 'sub', 'loop'));
  await symlink(root, path.join(root, 'other', 'again'));
  const w = await walk(root);
  assert.equal(w.images.length, 40);
  assert.deepEqual(w.images, Array.from({ length: 40 }, (_, i) => `img${i}.png`).sort());
  assert.deepEqual(w.skipped, { 'link cycle': { count: 2, examples: [`other/again -> ${root}`, 'sub/loop -> ..'] } });

  // trained on: exactly the 40, one summary line with the cycles in it
  const r = await runCli(['train', '--data', root, '--out', path.join(dir, 'loops-run'), ...fast]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, / \(40 images\) from step 0/);
  const summary = r.stderr.split('\n').filter((l) => l.includes(`${root}:`));
  assert.deepEqual(summary, [
    `note: ${root}: 40 images, all 4x4 RGB; left out: 2 link cycles skipped (other/again -> ${root}, sub/loop -> ..) -> training 3x4x4 (override with --channels)`,
  ]);
});

/** Flags that keep a run to a second or so. */
const fast = ['--config', 'tiny', '--T', '100', '--sample-every', '0', '--threads', '1', '--steps', '1', '--image-size', '4'];

test('a second link to a subfolder, a link to a file outside, a hard link: each file once, under its direct path', async () => {
  const root = path.join(dir, 'links');
  const outside = path.join(dir, 'outside');
  await pngs(path.join(root, 'a'), 3);
  await pngs(outside, 2, 10);
  await symlink('a', path.join(root, 'b')); // a second way to a/
  await symlink('a', path.join(root, 'c'));
  await symlink(path.join(outside, 'img10.png'), path.join(root, 'linked.png')); // a file outside the tree: followed once
  await symlink(path.join(outside, 'img10.png'), path.join(root, 'linked-again.png'));
  await symlink(outside, path.join(root, 'ext')); // a folder outside: followed, but img10 is already in
  await link(path.join(root, 'a', 'img0.png'), path.join(root, 'hard.png'));
  const w = await walk(root);
  // a/img0.png and hard.png are one file: the first path in sorted order keeps it; the tree's own paths come before
  // those through links, and links are followed in sorted order (ext/ before linked*.png)
  assert.deepEqual(w.images, ['a/img0.png', 'a/img1.png', 'a/img2.png', 'ext/img10.png', 'ext/img11.png']);
  assert.deepEqual(w.skipped, {
    'folder linked twice': { count: 2, examples: ['b', 'c'] },
    'duplicate file': { count: 3, examples: ['hard.png', 'linked-again.png', 'linked.png'] },
  });
  const f = await inspectImageFolder(root);
  assert.equal(f.files.length, 5);
  const data = await loadImageFolder(root, { size: 4, channels: 3, inspection: f });
  // the pixel values say which files were read: 0 (hard link to a/img0), 1, 2, 10 and 11, each once
  assert.deepEqual([...Array(data.n).keys()].map((i) => data.images[i * 48]).sort((x, y) => x! - y!), [0, 1, 2, 10, 11]);
});

test('a FIFO, a socket-free dangling link, a folder named *.png: never opened, counted with their reasons', async () => {
  const root = path.join(dir, 'special');
  await pngs(root, 3);
  execFileSync('mkfifo', [path.join(root, 'x.png')]); // opening it would block forever
  await symlink('x.png', path.join(root, 'via-link.png')); // a link to the FIFO: not opened either
  await symlink('nowhere.png', path.join(root, 'dangling.png'));
  await pngs(path.join(root, 'dir.png'), 1, 7);
  await writeFile(path.join(root, 'notes.txt'), 'x');
  await writeFile(path.join(root, '.hidden.png'), 'x');
  const w = await walk(root);
  assert.deepEqual(w.images, ['dir.png/img7.png', 'img0.png', 'img1.png', 'img2.png']);
  assert.deepEqual(w.others, { '.txt': 1 });
  assert.deepEqual(w.skipped, {
    FIFO: { count: 2, examples: ['x.png', 'via-link.png'] },
    'dangling link': { count: 1, examples: ['dangling.png'] },
    'folder named like an image': { count: 1, examples: ['dir.png'] },
  });
  const r = await runCli(['train', '--data', root, '--out', path.join(dir, 'special-run'), ...fast]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, / \(4 images\) from step 0/);
  assert.match(
    r.stderr,
    /^note: .*special: 4 images, all 4x4 RGB; left out: 1 other file \(\.txt\), 2 FIFOs \(x\.png, via-link\.png\), 1 dangling link \(dangling\.png\); 1 folder named like an image, read as a folder \(dir\.png\) -> training/m,
  );
});

test('unreadable files and folders are counted in the summary with their reason (as a non-root user)', async (t) => {
  const root = path.join(dir, 'perm');
  await pngs(root, 3);
  await pngs(path.join(root, 'locked'), 2, 5);
  await png(path.join(root, 'secret.png'), 9);
  await chmod(path.join(root, 'secret.png'), 0o000);
  await chmod(path.join(root, 'locked'), 0o000);
  try {
    const isRoot = process.getuid?.() === 0;
    if (!isRoot) {
      const r = await runCli(['train', '--data', root, '--out', path.join(dir, 'perm-run'), ...fast]);
      assert.equal(r.code, 0, r.stderr);
      checkPermSummary(r.stdout, r.stderr, root);
      return;
    }
    // as root, permissions do not stop a read: walk and train as the unprivileged user 'nobody' in a child process
    const nobody = 65534;
    for (const p of [dir, root, path.join(root, 'img0.png'), path.join(root, 'img1.png'), path.join(root, 'img2.png')]) await chown(p, nobody, nobody);
    const out = path.join(dir, 'perm-run');
    const cli = path.resolve('src/cli/bin.ts');
    const res = spawnSync(process.execPath, ['--import', 'tsx', cli, 'train', '--data', root, '--out', out, ...fast], {
      uid: nobody,
      gid: nobody,
      encoding: 'utf8',
      env: { ...process.env, HOME: dir },
      cwd: process.cwd(),
    });
    if (res.error !== undefined || /EACCES.*(tsx|node_modules|src)/.test(res.stderr)) {
      t.skip(`cannot run as 'nobody' here: ${res.error?.message ?? res.stderr.split('\n')[0]}`);
      return;
    }
    assert.equal(res.status, 0, res.stderr);
    checkPermSummary(res.stdout, res.stderr, root);
  } finally {
    await chmod(path.join(root, 'locked'), 0o755);
    await chmod(path.join(root, 'secret.png'), 0o644);
  }
});

function checkPermSummary(stdout: string, stderr: string, root: string): void {
  assert.match(stdout, / \(3 images\) from step 0/);
  const summary = stderr.split('\n').filter((l) => l.includes(`${root}:`));
  assert.equal(summary.length, 1, stderr);
  assert.match(
    summary[0]!,
    /^warning: .*perm: 3 images, all 4x4 RGB; left out: 1 unreadable image file \(secret\.png: permission denied\), 1 unreadable folder \(locked \(EACCES\)\) -> training .* \(--on-corrupt error stops at the first unreadable file instead\)$/,
  );
}

test('a folder of 100,000 non-images: counted by extension, no memory per file; the entry bound names its flag', async () => {
  const root = path.join(dir, 'many');
  await pngs(root, 1);
  const t0 = performance.now();
  for (let i = 0; i < 100_000; i++) writeFileSync(path.join(root, `f${i}.txt`), '');
  const made = performance.now() - t0;
  const heap0 = process.memoryUsage().heapUsed;
  const t1 = performance.now();
  const w = await walk(root);
  const ms = performance.now() - t1;
  const heapGrowth = process.memoryUsage().heapUsed - heap0;
  console.log(`# 100,000 entries: made in ${made.toFixed(0)} ms, walked in ${ms.toFixed(0)} ms, heap +${(heapGrowth / 1e6).toFixed(1)} MB`);
  assert.deepEqual(w.images, ['img0.png']);
  assert.deepEqual(w.others, { '.txt': 100_000 });
  assert.equal(w.firstOther !== undefined, true);
  // over the bound: one error that names the limit and the flag that raises it
  await assert.rejects(walk(root, { maxEntries: 50_000 }), (e: unknown) => {
    assert.ok(e instanceof FolderWalkError);
    assert.match(e.message, /more than 50,000 entries .* \(--folder-max-entries raises it; library: maxEntries\)$/);
    return true;
  });
  const r = await runCli(['train', '--data', root, '--out', path.join(dir, 'many-run'), '--folder-max-entries', '1000', ...fast]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error: --data: image folder .*many: more than 1,000 entries .*--folder-max-entries raises it/m);
  assert.deepEqual(await readdir(dir).then((d) => d.includes('many-run')), false); // a refused start leaves nothing
});

test('depth is bounded, with an error that names the flag; a bad bound is refused before the walk', async () => {
  const root = path.join(dir, 'deep');
  let d = root;
  for (let i = 0; i < 6; i++) d = path.join(d, `l${i}`);
  await pngs(d, 1);
  assert.deepEqual((await walk(root)).images, ['l0/l1/l2/l3/l4/l5/img0.png']);
  await assert.rejects(walk(root, { maxDepth: 4 }), /l0\/l1\/l2\/l3\/l4 is 5 folders deep, past the limit of 4 \(--folder-max-depth raises it; library: maxDepth\)$/);
  const r = await runCli(['train', '--data', root, '--folder-max-depth', '0', ...fast]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error: option '--folder-max-depth <n>' argument '0' is invalid\. --folder-max-depth must be an integer in \[1, [\d]+\], got '0'$/m);
});
