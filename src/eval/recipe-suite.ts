/**
 * The recipe suite of issue 27: image folders that differ from each other and from `make:shapes`, each with its
 * own judge, for choosing `ddpm train`'s defaults on data they were never tuned on (scripts/measure-recipe.ts runs
 * it; docs/recipe-suite.md has the protocol and the tables).
 *
 *   textured   shapes on gradients, stripes, checks or blobs     RGB 32   src/data/suite.ts
 *   multi      1-3 small objects; the class is how many          RGB 32
 *   glyphs     ring, arrow, crescent, letters A and E            RGB 32
 *   grey       turned shapes in grey under film grain            grey 32
 *   mnist-png  MNIST's digits written out as PNGs                grey 28  src/data/mnist.ts
 *
 * (and `shapes`, the folder of make:shapes, for comparison; not in the suite). A folder is images 0..n−1 of its
 * generator's seed 0; its judge, models/suite-<name>-classifier (`npm run train:classifier -- --data <name>`),
 * trains on seed 1 and its rejects, and is tested on seed 2.
 */
import { fileURLToPath } from 'node:url';
import type { ImageGenerator } from '../data/generator.ts';
import { mnistGenerator } from '../data/mnist.ts';
import { shapesGenerator } from '../data/shapes.ts';
import { SUITE_GENERATORS } from '../data/suite.ts';
import { DEFAULT_SHAPES_CLASSIFIER_DIR } from './classifier-dir.ts';

/** The folders of the suite, in the order its tables list them. */
export const SUITE_NAMES = ['textured', 'multi', 'glyphs', 'grey', 'mnist-png'] as const;
/** Every folder measure:recipe and make:folder know: the suite's and make:shapes'. */
export const FOLDER_NAMES = [...SUITE_NAMES, 'shapes'] as const;
export type FolderName = (typeof FOLDER_NAMES)[number];

/** Images in a folder of the suite, as `make:shapes` writes by default. */
export const SUITE_FOLDER_SIZE = 2000;

export interface SuiteFolder {
  name: FolderName;
  generator: ImageGenerator;
  /** the judge's LeNet directory: the generator's classes and 'none' */
  judgeDir: string;
  /** how `npm run train:classifier -- --data <name>` trains the judge by default */
  judgeTraining: { trainN: number; testN: number; epochs: number; shift: number };
}

const judgeDir = (name: string) => fileURLToPath(new URL(`../../models/suite-${name}-classifier`, import.meta.url));

/** 14,000 images an epoch (10,000 and 4,000 rejects), as the shape classifier's. */
const SYNTHETIC_JUDGE = { trainN: 10_000, testN: 10_000, epochs: 20, shift: 0 };

export function suiteFolder(name: string): SuiteFolder {
  switch (name) {
    case 'textured':
    case 'multi':
    case 'glyphs':
    case 'grey':
      return { name, generator: SUITE_GENERATORS[name]!, judgeDir: judgeDir(name), judgeTraining: SYNTHETIC_JUDGE };
    case 'mnist-png':
      // every image of MNIST's part 1 (50,000), shifted by up to ±2 pixels as lenet-mnist's; tested on part 2
      return { name, generator: mnistGenerator(), judgeDir: judgeDir(name), judgeTraining: { trainN: 50_000, testN: 5_000, epochs: 4, shift: 2 } };
    case 'shapes':
      return { name, generator: shapesGenerator(32), judgeDir: DEFAULT_SHAPES_CLASSIFIER_DIR, judgeTraining: SYNTHETIC_JUDGE };
    default:
      throw new Error(`unknown folder '${name}' (known: ${FOLDER_NAMES.join(', ')})`);
  }
}

/** One (folder, seed) of a recipe: what measure:recipe writes to result.json. */
export interface SeedResult {
  folder: string;
  seed: number;
  /** the budget: --steps S or --minutes M */
  budget: { steps?: number; minutes?: number };
  /** the recipe's extra `ddpm train` flags ([] = all defaults) */
  recipe: string[];
  /** the step the run ended at */
  steps: number;
  /** training seconds (the checkpoint's elapsed time) */
  trainSeconds: number;
  stepsPerMinute: number;
  /** judged images */
  n: number;
  confidentFraction: number;
  classes: Record<string, number>;
  fid: number;
  realFid: number;
  [key: string]: unknown;
}

/** The line measure:recipe prints for a folder: its seeds side by side, their mean and minimum. */
export interface FolderSummary {
  folder: string;
  recipe: string[];
  budget: SeedResult['budget'];
  seeds: number[];
  steps: number[];
  stepsPerMinute: number;
  n: number;
  confident: number[];
  mean: number;
  min: number;
  fid: number[];
  realFid: number;
  /** images per class, over all seeds */
  classes: Record<string, number>;
}

const r4 = (x: number) => Number(x.toPrecision(4));

export function summarizeFolder(results: readonly SeedResult[]): FolderSummary {
  if (results.length === 0) throw new Error('summarizeFolder: no results');
  const first = results[0]!;
  const confident = results.map((r) => r.confidentFraction);
  const classes: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.classes)) classes[k] = (classes[k] ?? 0) + v;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    folder: first.folder,
    recipe: first.recipe,
    budget: first.budget,
    seeds: results.map((r) => r.seed),
    steps: results.map((r) => r.steps),
    stepsPerMinute: Math.round(mean(results.map((r) => r.stepsPerMinute))),
    n: first.n,
    confident,
    mean: r4(mean(confident)),
    min: Math.min(...confident),
    fid: results.map((r) => r.fid),
    realFid: first.realFid,
    classes,
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The suite's markdown table: one row per folder; the last row the worst folder's minimum and the mean of means. */
export function summaryTable(rows: readonly FolderSummary[]): string {
  const lines = [
    '| folder | steps | steps/min | confident per seed | mean | min | FID per seed (real) |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) =>
      `| ${r.folder} | ${r.steps.map((s) => s.toLocaleString('en-US')).join(' / ')} | ${r.stepsPerMinute} | ${r.confident.map(pct).join(' / ')} | ${pct(r.mean)} | ${pct(r.min)} | ${r.fid.join(' / ')} (${r.realFid}) |`),
  ];
  if (rows.length > 1) {
    const means = rows.map((r) => r.mean);
    lines.push(`| **suite** | | | | ${pct(means.reduce((a, b) => a + b, 0) / means.length)} | **${pct(Math.min(...rows.map((r) => r.min)))}** | |`);
  }
  return lines.join('\n');
}
