/**
 * The numeric diffusion core (Ho et al. 2020; Nichol & Dhariwal 2021; Song et al. 2021): schedules,
 * forward / posterior / reverse process, losses, NLL, samplers and respacing, on typed arrays.
 * Shared by Node and the browser: nothing here imports `node:*` or the engine.
 *
 * Glossary (code ↔ symbol ↔ Ho et al. 2020); index t in code is the paper's t+1:
 *   betas β_t (eq. 2) · alphas α_t = 1 − β_t · alphasCumprod ᾱ_t = ∏_{i≤t} α_i (eq. 4) ·
 *   posteriorVariance β̃_t (eq. 7) · posteriorMeanCoef1/2: μ̃_t's x_0 / x_t coefficients (eq. 7) ·
 *   qSample: x_t from x_0 (eq. 4) · qPosteriorMeanVariance: q(x_{t−1}|x_t,x_0) (eq. 6–7) ·
 *   pMeanVariance: p_θ(x_{t−1}|x_t) (eq. 1, 11) · vbTermsBpd: L_{t−1} / L_0 (eq. 5) ·
 *   DdpmSampler: Algorithm 2 · DdimSampler: Song et al. eq. (12), (16) · DpmSolverSampler: Lu et al.
 *   2022 (DPM-Solver++), Algorithm 2 · inpaint: RePaint (Lugmayr et al. 2022) · sdedit: Meng et al. 2022 ·
 *   ddimInvert: Song et al. §4.3.
 * The full table is at the top of `gaussian-diffusion.ts`.
 */
export {
  type ShapedArray,
  type DiffusionModel,
  type MeanType,
  type Timesteps,
  type VarType,
  batchDims,
  numel,
  resolveTimesteps,
} from './batch.ts';
export {
  type CosineScheduleConfig,
  type LinearScheduleConfig,
  type ScaledLinearScheduleConfig,
  type ScheduleConfig,
  type ScheduleConfigInput,
  type ScheduleKind,
  type ScheduleTables,
  type SigmoidScheduleConfig,
  betasForAlphaBar,
  betasForSchedule,
  linspace,
  rescaleZeroTerminalSnr,
  scheduleConfig,
  scheduleTables,
} from './schedule.ts';
export {
  type CalcBpdOptions,
  type CalcBpdOutput,
  type PMeanVarianceOptions,
  type PMeanVarianceOutput,
  type TrainingLossOptions,
  type TrainingLosses,
  type VbOptions,
  GaussianDiffusion,
  splitModelOutput,
} from './gaussian-diffusion.ts';
export {
  HALF_BIN,
  HYBRID_LAMBDA,
  approxStandardNormalCdf,
  discretizedGaussianLogLikelihood,
  hybridLoss,
  meanFlat,
  meanSquaredError,
  minSnrWeights,
  normalKl,
} from './losses.ts';
export {
  type DynamicThreshold,
  type X0Processing,
  clipInPlace,
  dynamicThresholdInPlace,
  processX0InPlace,
  quantile,
} from './thresholding.ts';
export {
  type DiffusersSpacing,
  type TimestepSpec,
  diffusersTimesteps,
  dpmSolverTimesteps,
  resolveTimestepSpec,
  respace,
  roundHalfEven,
  spaceTimesteps,
} from './respace.ts';
export {
  type DdimSamplerOptions,
  type DdpmSamplerOptions,
  type ModelCall,
  type SampleLoopOptions,
  type SampleLoopStep,
  type Sampler,
  type SamplerOptions,
  type SamplerStepOutput,
  type SamplingProcess,
  type StepReport,
  BaseSampler,
  DdimSampler,
  DdpmSampler,
  callModel,
  ddimSigma,
  runProcess,
  sampleLoop,
  sampleSteps,
} from './samplers.ts';
export { type DpmSolverOptions, type FinalSigmasType, DpmSolverSampler } from './dpm-solver.ts';
export { type InpaintOptions, type InpaintStep, expandMask, inpaint, inpaintSteps, repaintSchedule } from './inpaint.ts';
export { type InvertStep, type SdeditOptions, ddimInvert, keptIndex, sdedit, sdeditStartStep, sdeditSteps } from './edit.ts';
export { type ConditionalModel, type GuidanceOptions, DEFAULT_GUIDANCE_SCALE, classifierFreeGuidance, guideRow } from './guidance.ts';
export {
  calcBpdLoop,
  cosine,
  getVelocity,
  linear,
  pMeanVariance,
  predictEpsFromV,
  predictEpsFromX0,
  predictX0,
  predictX0FromEps,
  predictX0FromV,
  qMeanVariance,
  qPosteriorMeanVariance,
  qSample,
  qStep,
  scaledLinear,
  sigmoid,
} from './functional.ts';
export { type DiffusionConfig, LOSSES, MEAN_TYPES, VAR_TYPES, defaultDiffusionConfig, validateDiffusionConfig } from './config.ts';
