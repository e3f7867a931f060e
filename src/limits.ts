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
