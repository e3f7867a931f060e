/**
 * The diffusion config of a model: its noise schedule, what the network predicts, its reverse-process variance
 * and the loss it was trained with. Stored in every checkpoint (config.json's `diffusion`) and in an exported
 * model's ONNX metadata (`ddpm-ts.diffusion`); sampling needs nothing else. Validated like the rest of the
 * training config: known keys only, typed values.
 */
import { checkConfigKeys, checkConfigType } from '../describe.ts';
import type { MeanType, VarType } from './batch.ts';
import { scheduleConfig, type ScheduleConfig } from './schedule.ts';

export interface DiffusionConfig {
  schedule: ScheduleConfig;
  meanType: MeanType;
  varType: VarType;
  /** 'simple': L_simple (Ho et al. eq. 14); 'hybrid': L_simple + λ·L_vlb with learned variances (N&D) */
  loss: 'simple' | 'hybrid';
  /** min-SNR-γ loss weighting; 0 = off */
  minSnrGamma: number;
}

export const MEAN_TYPES: readonly MeanType[] = ['epsilon', 'x0', 'v'];
export const VAR_TYPES: readonly VarType[] = ['fixedLarge', 'fixedSmall', 'learnedRange'];
export const LOSSES: readonly DiffusionConfig['loss'][] = ['simple', 'hybrid'];

/** The reference recipe: linear β with T = 1000, ε-prediction, fixed-large variance, L_simple. */
export function defaultDiffusionConfig(): DiffusionConfig {
  return { schedule: scheduleConfig({ kind: 'linear', T: 1000 }), meanType: 'epsilon', varType: 'fixedLarge', loss: 'simple', minSnrGamma: 0 };
}

/**
 * A diffusion config from JSON (missing keys take the defaults). The hybrid loss implies learned variances,
 * and learned variances need the hybrid loss. Throws "config: ..." naming the key at fault.
 */
export function validateDiffusionConfig(input: unknown): DiffusionConfig {
  const d = defaultDiffusionConfig();
  const raw = checkConfigKeys(input, d, 'diffusion');
  const out = { ...d } as Record<string, unknown>;
  for (const [k, v] of Object.entries(raw)) {
    if (k !== 'schedule') checkConfigType(v, (d as unknown as Record<string, unknown>)[k], `diffusion.${k}`);
    out[k] = v;
  }
  const c = out as unknown as DiffusionConfig;
  c.schedule = scheduleConfig(c.schedule);
  if (!MEAN_TYPES.includes(c.meanType)) throw new Error(`config: diffusion.meanType '${c.meanType}' is not epsilon, x0 or v`);
  if (!VAR_TYPES.includes(c.varType)) throw new Error(`config: diffusion.varType '${c.varType}' is invalid`);
  if (!LOSSES.includes(c.loss)) throw new Error(`config: diffusion.loss '${c.loss}' is not simple or hybrid`);
  if (c.loss === 'hybrid') c.varType = 'learnedRange';
  if (c.varType === 'learnedRange' && c.loss !== 'hybrid') {
    throw new Error("config: varType 'learnedRange' needs loss 'hybrid' (the variance is learned only through L_vlb)");
  }
  if (!Number.isFinite(c.minSnrGamma)) throw new Error(`config: 'diffusion.minSnrGamma' expected a finite number, got ${c.minSnrGamma}`);
  if (c.minSnrGamma < 0) throw new Error(`config: 'diffusion.minSnrGamma' must be >= 0, got ${c.minSnrGamma}`);
  return c;
}
