/**
 * JSON schemas of `ddpm serve`'s requests and answers: Fastify validates every body and query against them (unknown
 * fields are refused, no type is coerced) and @fastify/swagger publishes them as the OpenAPI document. Bounds come
 * from the server's limits, so the document shows what this server accepts.
 */
import { MAX_GUIDANCE_SCALE, MAX_SEED, MAX_T } from '../limits.ts';
import { SAMPLER_KINDS } from '../sample/generate.ts';

/** The request limits the schemas write in. */
export interface SchemaLimits {
  readonly maxN: number;
  readonly maxSteps: number;
}

export const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message', 'param'],
      properties: {
        code: { type: 'string', description: 'a stable name: invalid_request, unauthorized, not_found, body_too_large, invalid_value, rate_limited, queue_full, draining, timeout, ...' },
        message: { type: 'string' },
        param: { type: 'string', nullable: true, description: 'the request field at fault, if one is' },
      },
    },
  },
} as const;

const errors = Object.fromEntries([400, 401, 404, 413, 422, 429, 503].map((s) => [s, { description: 'error', ...errorSchema }]));

/** No query parameters: any is refused. */
export const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

function samplerProperties(l: SchemaLimits, nDefault: number) {
  return {
    model: { type: 'string', minLength: 1, maxLength: 256, description: 'a served model (GET /v1/models); default mnist-28 (mnist-28-cond with a class) or the first one served' },
    n: { type: 'integer', minimum: 1, maximum: l.maxN, description: `number of images (default ${nDefault}, as the command's)` },
    sampler: { type: 'string', enum: [...SAMPLER_KINDS], description: 'ddpm (ancestral), ddim or dpm++ (DPM-Solver++(2M)); default ddim' },
    steps: { type: 'integer', minimum: 2, maximum: Math.min(l.maxSteps, MAX_T), description: 'sampling steps, respaced from T; default 50 for ddim, 20 for dpm++, T for ddpm' },
    eta: { type: 'number', minimum: 0, maximum: 1, description: 'DDIM η (Song et al. eq. 16); ddim only; default 1' },
    seed: { type: 'integer', minimum: 0, maximum: MAX_SEED, description: 'random seed; image i draws from stream i, whatever else the server runs; default 0' },
    response_format: { type: 'string', enum: ['b64_json', 'png'], description: 'b64_json (default): one PNG per image; png: one grid of all, as the command writes --out' },
  } as const;
}

export function generationBodySchema(l: SchemaLimits) {
  return {
    type: 'object',
    additionalProperties: false,
    description: 'ddpm sample: image i equals image i of `ddpm sample` with the same model, sampler, steps, eta, seed, class and guidance',
    properties: {
      ...samplerProperties(l, 64),
      class: {
        anyOf: [
          { type: 'integer', minimum: 0 },
          { type: 'string', minLength: 1, maxLength: 256 },
        ],
        description: 'class-conditional models: the class, by number or name; left out, the images are unconditional',
      },
      guidance: { type: 'number', minimum: 0, maximum: MAX_GUIDANCE_SCALE, description: 'classifier-free guidance scale with class: 0 unconditional, 1 conditional, > 1 stronger; default 3' },
    },
  } as const;
}

export function editBodySchema(l: SchemaLimits) {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['image'],
    description:
      'with mask: ddpm inpaint (RePaint jump / resample); without: ddpm edit (SDEdit, strength). As JSON with base64 images, or multipart/form-data with image and mask as files and the other fields as text.',
    properties: {
      ...samplerProperties(l, 1),
      image: { type: 'string', minLength: 1, description: 'a PNG, JPEG or WebP, base64 (a data: URL is fine); read at the model\'s channels and size' },
      mask: { type: 'string', minLength: 1, description: 'inpainting: an image of the same size, base64; white (luma >= 50%) = generate, darker = keep' },
      strength: { type: 'number', minimum: 0, maximum: 1, description: 'SDEdit: in (0, 1], how much noise is added (0 is refused: it would keep no step); default 0.6' },
      jump: { type: 'integer', minimum: 1, maximum: 100_000, description: "inpainting: RePaint's jump length; default 10" },
      resample: { type: 'integer', minimum: 1, maximum: 1000, description: "inpainting: RePaint's resamplings (1 = none); default 1" },
    },
  } as const;
}

export const imagesResponse = {
  200: {
    type: 'object',
    required: ['created', 'data'],
    properties: {
      created: { type: 'integer', description: 'Unix time (s)' },
      data: {
        type: 'array',
        items: {
          type: 'object',
          required: ['b64_json', 'seed'],
          properties: {
            b64_json: { type: 'string', description: 'a PNG, base64' },
            seed: { type: 'integer' },
            index: { type: 'integer', description: 'the image\'s random stream in the request (absent for a png grid)' },
          },
        },
      },
    },
  },
  ...errors,
} as const;

export const modelsResponse = {
  200: {
    type: 'object',
    required: ['object', 'data'],
    properties: {
      object: { type: 'string' },
      data: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            object: { type: 'string' },
            image_size: { type: 'integer' },
            channels: { type: 'integer' },
            classes: { type: 'array', items: { type: 'string' }, nullable: true },
            timesteps: { type: 'integer', description: 'T' },
            prediction: { type: 'string' },
            variance: { type: 'string' },
            step: { type: 'integer', nullable: true, description: 'training step of the weights' },
          },
        },
      },
    },
  },
  401: errors[401],
} as const;
