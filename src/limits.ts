/**
 * Resource limits: the largest values a flag, a config file or a data file may declare. Every reader checks
 * declared sizes against these (and against the file's own length) before it allocates anything, so a small
 * hostile file or a typo in a flag gives a one-line error that names the limit instead of gigabytes of RSS.
 * Pure module (no node:*): the browser uses the same limits.
 */

/** Diffusion steps T. Ho et al. use 1000, Nichol & Dhariwal up to 4000. */
export const MAX_T = 100_000;

/** Model image size (side, pixels). */
export const MAX_IMAGE_SIZE = 1024;

/** Image channels a model can have: grayscale or RGB. */
export const IMAGE_CHANNELS: readonly number[] = [1, 3];

/** Pixels (width x height) an image file may declare; checked from the header, before decoding. */
export const MAX_DECODE_PIXELS = 2 ** 25; // 33.5 MP, e.g. 8192 x 4096

/** Random seeds: non-negative safe integers (the RNG key is [seed mod 2^32, floor(seed / 2^32)]). */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;

/**
 * Images in flight while a folder is decoded, counted in declared pixels: a decode starts only while the
 * pixels of the decodes already running plus its own stay within this (one image always may run alone), so
 * eight large files never decode at once.
 */
export const DECODE_BUDGET_PIXELS = MAX_DECODE_PIXELS;

/** Channels at any U-Net level (baseChannels x channelMults[i]). ADM uses 1024 at most, Stable Diffusion 1280. */
export const MAX_CHANNELS = 2048;

/** U-Net levels (channelMults.length); the image halves once per extra level. */
export const MAX_LEVELS = 8;

/** Residual blocks per U-Net level (Ho et al. use 2, ADM up to 3). */
export const MAX_RES_BLOCKS = 16;

/**
 * U-Net parameters. Inference sessions bake the float32 weights into the ONNX model, a protobuf that cannot
 * exceed 2 GiB; 5e8 parameters is 2 GB. The CIFAR-10 model of Ho et al. has 35.7M.
 */
export const MAX_PARAMS = 500_000_000;

/** Images per model call (training batch, --batch-size); the memory estimate usually binds first. */
export const MAX_BATCH_SIZE = 65_536;

/** Images one command may generate (--n, --fid, --sample-count); FID is usually reported at 50,000. */
export const MAX_SAMPLES = 1_000_000;

/** Pixels of a PNG grid we write: sharp's (libvips') default input limit, 0x3FFF squared. */
export const MAX_GRID_PIXELS = 0x3fff * 0x3fff;

/** Dimensions of an IDX file (MNIST uses 1 and 3). */
export const MAX_IDX_RANK = 8;

/** Bytes of a gzip-compressed IDX file once inflated (MNIST's training images are 47 MB). */
export const MAX_IDX_BYTES = 2 ** 30;

/** onnxruntime intra-op threads (--threads): each is an OS thread with its own stack. */
export const MAX_THREADS = 1024;

/**
 * Pixels on either side of an image file (checked from the header with MAX_DECODE_PIXELS). Within the pixel limit
 * a 33554432x1 PNG took 1 GB (libvips holds whole rows at every step) and a 1x33554432 one 25 s (a cost per row).
 * Twice the long side of 8192 x 4096; WebP stops at 16383.
 */
export const MAX_DECODE_SIDE = 16_384;

/**
 * Bytes a decoder may hold for the whole image before it gives the first row: an interlaced PNG (all of its
 * pixels), a progressive JPEG (its DCT coefficients), a WebP (decoded whole). Sequential PNG and JPEG stream
 * rows and need none. At 2^25 pixels an interlaced 16-bit RGBA PNG peaked at 450 MB and a progressive CMYK
 * JPEG at 465 MB; within this bound the largest accepted images peak at 330 MB or less (bench/decode.ts).
 */
export const MAX_DECODE_FRAME_BYTES = 2 ** 27; // 128 MiB

/**
 * Classes of a class-conditional model (UNetConfig.numClasses). Training labels are held as uint8 (the data
 * loader's `labels`), so 256 classes; the label embedding then has 257 rows (the last is "no class").
 */
export const MAX_CLASSES = 256;

/**
 * Folder levels an image folder may have below its root (ddpm train --folder-max-depth). Data sets nest a few
 * levels; a walk past this is almost always a link loop the walk could not see as one (or a mistaken root).
 */
export const MAX_FOLDER_DEPTH = 64;

/**
 * Directory entries (files and folders, hidden ones too) one walk of an image folder reads (ddpm train
 * --folder-max-entries). Only images are held in memory, so this bounds time, not memory: ten times ImageNet.
 */
export const MAX_FOLDER_ENTRIES = 15_000_000;

/** Classifier-free guidance scale s (--guidance): s = 0 is unconditional, 1 conditional; GLIDE and ADM use up to ~10. */
export const MAX_GUIDANCE_SCALE = 100;
