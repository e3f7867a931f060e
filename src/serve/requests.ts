/**
 * From a validated request body to the images a scheduler runs: the sampler `ddpm sample` would build for the same
 * options (pipelineSampler), one random stream per image (`Rng(seed).fold(i)`, as `ddpm sample` / `inpaint` / `edit`
 * draw them), and one sampling process per image (sampleSteps, inpaintSteps, sdeditSteps). So image i of a request
 * is image i of the command with the same arguments. Every problem is an ApiError naming the field.
 */
import { DEFAULT_GUIDANCE_SCALE } from '../diffusion/guidance.ts';
import { inpaintSteps, repaintSchedule } from '../diffusion/inpaint.ts';
import { sdeditStartStep, sdeditSteps } from '../diffusion/edit.ts';
import { sampleSteps, type Sampler } from '../diffusion/samplers.ts';
import { readImageHeader, type ImageHeader } from '../io/image.ts';
import { decodeMask, decodeModelImage } from '../io/model-image.ts';
import type { LoadedModel } from '../pipeline/load.ts';
import { pipelineSampler } from '../pipeline/pipeline.ts';
import { Rng } from '../rng.ts';
import type { SamplerKind } from '../sample/generate.ts';
import type { ImageTask } from './batcher.ts';
import { ApiError, apiWords } from './errors.ts';

/** What a request may ask for at most. */
export interface RequestLimits {
  /** images per request */
  readonly maxN: number;
  /** model calls one image may need: sampler steps, or RePaint's reverse steps */
  readonly maxSteps: number;
  /** pixels of an uploaded image, from its header */
  readonly maxImagePixels: number;
}

/** The sampler fields shared by both POST routes. */
export interface SamplerFields {
  model?: string;
  n?: number;
  sampler?: SamplerKind;
  steps?: number;
  eta?: number;
  seed?: number;
  response_format?: 'b64_json' | 'png';
}

export interface GenerationBody extends SamplerFields {
  class?: number | string;
  guidance?: number;
}

export interface EditBody extends SamplerFields {
  /** base64 PNG, JPEG or WebP (a data: URL is fine) */
  image: string;
  mask?: string;
  strength?: number;
  jump?: number;
  resample?: number;
}

/** What a scheduler needs to run a request, and what the log line and the answer say about it. */
export interface Plan {
  readonly kind: 'generation' | 'inpaint' | 'sdedit';
  readonly n: number;
  readonly seed: number;
  /** model calls per image */
  readonly steps: number;
  readonly tasks: ImageTask[];
}

/** The sampler for the request's fields, as `ddpm sample` builds it; problems as 422 naming the field. */
function samplerFor(model: LoadedModel, body: SamplerFields, limits: RequestLimits): () => Sampler {
  const T = model.diffusion.schedule.T;
  const kind = body.sampler ?? 'ddim';
  if (body.eta !== undefined && kind !== 'ddim') throw new ApiError(422, 'invalid_value', `eta applies to sampler ddim only, not ${kind}`, 'eta');
  if (body.steps !== undefined && body.steps > T) throw new ApiError(422, 'invalid_value', `steps must be in [2, ${T}] for this model (T = ${T}), got ${body.steps}`, 'steps');
  const make = () => pipelineSampler(model.diffusion, { sampler: kind, steps: body.steps, eta: body.eta });
  // samplers without state (DDPM, DDIM) are shared by every request that asks for the same one
  const cache = samplerCache.get(model) ?? new Map<string, Sampler>();
  samplerCache.set(model, cache);
  const key = `${kind} ${body.steps} ${body.eta}`;
  let sampler: Sampler;
  try {
    sampler = cache.get(key) ?? make();
  } catch (e) {
    const msg = apiWords((e as Error).message);
    throw new ApiError(422, 'invalid_value', msg, /^eta/.test(msg) ? 'eta' : 'steps', { cause: e });
  }
  const steps = sampler.timesteps.length;
  if (steps > limits.maxSteps) {
    throw new ApiError(422, 'over_limit', `${steps} steps is over this server's limit of ${limits.maxSteps} model calls per image${body.steps === undefined ? ` (the default for ${kind}; ask for fewer steps)` : ''}`, 'steps');
  }
  // DPM-Solver++ keeps the previous step's x̂_0: a sampler of its own for every image; the others hold no state
  if (sampler.reset) return make;
  if (cache.size >= 256) cache.clear();
  cache.set(key, sampler);
  return () => sampler;
}

const samplerCache = new WeakMap<LoadedModel, Map<string, Sampler>>();

/** The images a request asks for (its n, or the command's default), before anything else is read. */
export function requestedImages(body: SamplerFields, kind: 'generation' | 'edit', limits: RequestLimits): number {
  return checkN(body.n ?? (kind === 'generation' ? 64 : 1), limits);
}

function checkN(n: number, limits: RequestLimits): number {
  if (n > limits.maxN) throw new ApiError(422, 'over_limit', `n must be at most ${limits.maxN} on this server, got ${n}`, 'n');
  return n;
}

/** The class label a request names (a number or a class name), checked against the model. */
function classLabel(model: LoadedModel, cls: number | string): number {
  const K = model.unet.numClasses;
  if (K === 0) throw new ApiError(422, 'invalid_value', 'this model is unconditional: it takes no class', 'class');
  const names = model.classNames ?? Array.from({ length: K }, (_, i) => String(i));
  const byName = typeof cls === 'string' ? names.indexOf(cls) : -1;
  const label = byName >= 0 ? byName : typeof cls === 'number' ? cls : /^\d+$/.test(cls) ? Number(cls) : NaN;
  if (!(Number.isSafeInteger(label) && label >= 0 && label < K)) {
    const list = K > 12 ? `${names.slice(0, 12).join(', ')}, ...` : names.join(', ');
    throw new ApiError(422, 'invalid_value', `class ${JSON.stringify(cls)}: the model has classes 0..${K - 1} (${list})`, 'class');
  }
  return label;
}

/** POST /v1/images/generations: `ddpm sample` with the same model, sampler, steps, eta, seed, class and guidance. */
export function generationPlan(model: LoadedModel, body: GenerationBody, limits: RequestLimits): Plan {
  const n = checkN(body.n ?? 64, limits);
  const seed = body.seed ?? 0;
  if (body.guidance !== undefined && body.class === undefined) throw new ApiError(422, 'invalid_value', 'guidance needs a class (the class to guide towards)', 'guidance');
  const guidance = body.class === undefined ? undefined : { label: classLabel(model, body.class), scale: body.guidance ?? DEFAULT_GUIDANCE_SCALE };
  const sampler = samplerFor(model, body, limits);
  const { inChannels: c, imageSize: s } = model.unet;
  const root = new Rng(seed);
  const tasks = Array.from({ length: n }, (_, i): ImageTask => ({ process: sampleSteps(sampler(), [1, c, s, s], root.fold(i)), guidance }));
  return { kind: 'generation', n, seed, steps: sampler().timesteps.length, tasks };
}

/** Base64 (or a data: URL) to bytes; 422 when there is nothing. */
function imageBytes(b64: string, param: string): Uint8Array {
  const body = b64.startsWith('data:') ? b64.slice(b64.indexOf(',') + 1) : b64;
  const bytes = Buffer.from(body, 'base64');
  if (bytes.length === 0) throw new ApiError(422, 'invalid_image', `${param} is empty: send a base64 PNG, JPEG or WebP`, param);
  return bytes;
}

/** The header of an uploaded image, within the limits: 422 if it is not a readable image, 413 if too large. */
async function uploadedHeader(bytes: Uint8Array, param: string, limits: RequestLimits): Promise<ImageHeader> {
  let h: ImageHeader;
  try {
    h = await readImageHeader(bytes);
  } catch (e) {
    const msg = (e as Error).message;
    if (/decode limit|MAX_DECODE/.test(msg)) throw new ApiError(413, 'image_too_large', `${param}: ${msg}`, param, { cause: e });
    throw new ApiError(422, 'invalid_image', `${param}: not a PNG, JPEG or WebP image this server can read (${msg})`, param, { cause: e });
  }
  if (h.pixels > limits.maxImagePixels) {
    throw new ApiError(413, 'image_too_large', `${param} is ${h.width}x${h.height}: over this server's limit of ${limits.maxImagePixels.toLocaleString('en-US')} pixels`, param);
  }
  return h;
}

async function decoded<T>(param: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    throw new ApiError(422, 'invalid_image', `${param}: cannot decode (${(e as Error).message})`, param, { cause: e });
  }
}

/**
 * POST /v1/images/edits: with a mask, `ddpm inpaint` (RePaint's jump and resample); without, `ddpm edit` (SDEdit,
 * strength). The image (and mask) are read as the commands read their files.
 */
export async function editPlan(model: LoadedModel, body: EditBody, limits: RequestLimits): Promise<Plan> {
  const n = checkN(body.n ?? 1, limits);
  const seed = body.seed ?? 0;
  const inpainting = body.mask !== undefined;
  if (inpainting && body.strength !== undefined) throw new ApiError(422, 'invalid_value', 'strength applies to SDEdit (no mask); with a mask the request is inpainting', 'strength');
  if (!inpainting && body.jump !== undefined) throw new ApiError(422, 'invalid_value', 'jump applies to inpainting (with a mask)', 'jump');
  if (!inpainting && body.resample !== undefined) throw new ApiError(422, 'invalid_value', 'resample applies to inpainting (with a mask)', 'resample');
  const sampler = samplerFor(model, body, { ...limits, maxSteps: Infinity }); // bounded below, in model calls
  const N = sampler().timesteps.length;
  const { inChannels: c, imageSize: s } = model.unet;

  // 1. the schedule: SDEdit's first step, or RePaint's moves (bounded by the steps limit in model calls)
  let calls: number;
  let start = 0;
  const jump = body.jump ?? 10;
  const resample = body.resample ?? 1;
  if (inpainting) {
    if (resample > 1 && jump >= N) throw new ApiError(422, 'invalid_value', `jump ${jump} must be below the number of steps (${N}) when resample is above 1`, 'jump');
    const states = repaintSchedule(N, jump, resample);
    calls = 0;
    for (let k = 1; k < states.length; k++) if (states[k]! < states[k - 1]!) calls++;
    if (calls > limits.maxSteps) throw new ApiError(422, 'over_limit', `${N} steps with jump ${jump} and resample ${resample} make ${calls} model calls per image, over this server's limit of ${limits.maxSteps}`, 'resample');
  } else {
    try {
      start = sdeditStartStep(N, body.strength ?? 0.6);
    } catch (e) {
      throw new ApiError(422, 'invalid_value', (e as Error).message, 'strength', { cause: e });
    }
    calls = N - start;
    if (calls > limits.maxSteps) throw new ApiError(422, 'over_limit', `strength ${body.strength ?? 0.6} of ${N} steps makes ${calls} model calls per image, over this server's limit of ${limits.maxSteps}`, 'steps');
  }

  // 2. the inputs, as the commands read their files: the image at the model's channels and size, the mask as 0 / 1
  const imgBytes = imageBytes(body.image, 'image');
  const imgHeader = await uploadedHeader(imgBytes, 'image', limits);
  let mask: Float32Array | undefined;
  if (inpainting) {
    const maskBytes = imageBytes(body.mask!, 'mask');
    const maskHeader = await uploadedHeader(maskBytes, 'mask', limits);
    if (maskHeader.width !== imgHeader.width || maskHeader.height !== imgHeader.height) {
      throw new ApiError(422, 'invalid_image', `mask is ${maskHeader.width}x${maskHeader.height} but image is ${imgHeader.width}x${imgHeader.height}: they must have the same size`, 'mask');
    }
    mask = await decoded('mask', () => decodeMask(maskBytes, maskHeader, s));
  }
  const image = await decoded('image', () => decodeModelImage(imgBytes, imgHeader, c as 1 | 3, s));

  // 3. one process per image, result i from stream i
  const root = new Rng(seed);
  const x0 = { data: image, shape: [1, c, s, s] };
  const tasks = Array.from({ length: n }, (_, i): ImageTask => ({
    process: inpainting
      ? inpaintSteps(sampler(), x0, mask!, root.fold(i), { jumpLength: jump, jumpNSample: resample })
      : sdeditSteps(sampler(), x0, root.fold(i), { strength: body.strength ?? 0.6 }),
  }));
  return { kind: inpainting ? 'inpaint' : 'sdedit', n, seed, steps: calls, tasks };
}
