/** What the fuzz parent (fuzz.ts) and its workers (worker.ts) exchange: arguments, IPC messages, heartbeat phases. */

export interface WorkerArgs {
  target: string;
  seed: number;
  /** folder of the seed corpus (generated inputs) */
  corpus?: string;
  /** files to run instead of generated inputs (regression replay); index = position in this list */
  files?: string[];
  start: number;
  /** stop before this index */
  end: number;
  /** stop after this time (ms since the epoch) */
  deadline: number;
  heartbeat: string;
  tmp: string;
  hangMs: number;
  rssFloorBytes: number;
  /** collect garbage before each input (a confirmation run: the watermark is then this input's own) */
  gcBefore?: boolean;
}

export type WorkerMessage =
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'fail'; index: number; kind: string; error: string; message: string; hash: string; bytes: number }
  /** `next`: the index to go on from (the end, or the input after one that raised the RSS watermark) */
  | { type: 'done'; stats: WorkerStats; next: number };

export interface WorkerStats {
  inputs: number;
  accepted: number;
  rejected: number;
  failures: number;
  /** the highest peak RSS of an input that stayed within the bound, and that input */
  maxRssBytes: number;
  maxRssIndex: number;
  slowestMs: number;
  slowestIndex: number;
  /** reader error classes seen on rejection, with counts */
  errors: Record<string, number>;
}

/** Heartbeat record: [index, phase] as float64; phase 0 = generating, 1 = running, 2 = finished. */
export const PHASE = { generating: 0, running: 1, finished: 2 } as const;

/** The bound on an input's peak RSS: max(floor, 10x its size). */
export function rssLimit(floor: number, inputBytes: number): number {
  return Math.max(floor, 10 * inputBytes);
}
