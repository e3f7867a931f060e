/**
 * Continuous batching for one model: the images of any number of requests share model calls, each image at its own
 * step of its own sampler (Orca's iteration-level scheduling, Yu et al. OSDI 2022, for a U-Net: it takes a timestep
 * per image, so images at different steps fit in one call).
 *
 * Every image is a {@link SamplingProcess} at batch 1 (src/diffusion/samplers.ts, inpaint.ts, edit.ts): the same
 * loop `ddpm sample` / `inpaint` / `edit` run, yielding its model calls instead of making them. The scheduler runs
 * calls back to back while there is work; each call takes up to `maxBatch` images, one per request in turn (round
 * robin, starting one request further on at every call, so a 64-image request does not starve a 1-image one);
 * a guided image adds its unconditional row (classifier-free guidance, combined with diffusion/guidance.ts's
 * `guideRow`, as `ddpm sample` does); a finished image leaves at once and a new request joins at the next call. A
 * cancelled request (a client gone, a timeout) frees its images before the next call.
 *
 * Since the model's output for an image does not depend on the other rows of its batch (onnxruntime's CPU kernels
 * compute each row alike; test/serve.test.ts compares with `ddpm sample`), and each image draws its noise from its
 * own stream, an image comes out as it would alone.
 */
import { guideRow } from '../diffusion/guidance.ts';
import type { ModelCall, SamplingProcess } from '../diffusion/samplers.ts';

/**
 * What a scheduler calls: x [R, C, H, W] and original timesteps t [R]; for a class-conditional model the label of
 * each row ([R], numClasses meaning ∅), null for an unconditional one. Returns [R, outChannels, H, W].
 */
export type BatchModel = (x: Float32Array, t: Int32Array, y: Int32Array | null, shape: readonly number[]) => Promise<Float32Array>;

/** One image of a request. */
export interface ImageTask {
  /** its sampling process at batch 1, not started */
  readonly process: SamplingProcess<unknown>;
  /** classifier-free guidance towards `label` with scale s (class-conditional models); left out: label ∅ */
  readonly guidance?: { readonly label: number; readonly scale: number };
}

export interface BatcherOptions {
  readonly model: BatchModel;
  /** [C, H, W] of one image */
  readonly imageShape: readonly [number, number, number];
  /** channels of the model's output (2C with learned variances) */
  readonly outChannels: number;
  /** a class-conditional model's number of classes K (label K is ∅); 0 for an unconditional one */
  readonly numClasses: number;
  /** images per model call (a guided image counts once, with two rows) */
  readonly maxBatch: number;
  /** after every model call: images and rows in it, its time */
  readonly onCall?: (images: number, rows: number, seconds: number) => void;
}

/** Why a request's images stopped before they were done: the `reason` given to {@link Ticket.cancel}. */
export class Cancelled extends Error {
  override name = 'Cancelled';
}

/** A submitted request: its images (in order) once all are done. */
export interface Ticket {
  readonly result: Promise<Float32Array[]>;
  /** Stop the request: its images leave before the next call and `result` rejects with `reason`. */
  cancel(reason?: Error): void;
}

interface Slot {
  readonly job: Job;
  readonly index: number;
  readonly process: SamplingProcess<unknown>;
  readonly guidance?: { readonly label: number; readonly scale: number };
  /** the model call it waits for */
  call: ModelCall | null;
  started: boolean;
}

interface Job {
  readonly slots: Slot[];
  /** unfinished slots */
  active: Slot[];
  /** where the job's next turn starts among `active` (round robin within the job) */
  cursor: number;
  /** slots handed out in the call being built */
  offered: number;
  readonly results: Float32Array[];
  settled: boolean;
  resolve(v: Float32Array[]): void;
  reject(e: Error): void;
}

/** The scheduler of one model (see the module comment). */
export class ContinuousBatcher {
  private jobs: Job[] = [];
  private running = false;
  private turn = 0;
  private idleWaiters: (() => void)[] = [];
  /** images accepted that have not been in a model call yet */
  waiting = 0;
  /** images that have been in a call and are not done */
  inFlight = 0;

  constructor(private readonly opts: BatcherOptions) {
    if (!Number.isInteger(opts.maxBatch) || opts.maxBatch < 1) throw new Error(`maxBatch must be a positive integer, got ${opts.maxBatch}`);
  }

  /** Images accepted and not done. */
  get pending(): number {
    return this.waiting + this.inFlight;
  }

  /**
   * Queue a request's images; they join at the next model call. Each process is started here, so a process that
   * refuses its inputs throws here, before anything is queued.
   */
  submit(tasks: readonly ImageTask[]): Ticket {
    if (tasks.length === 0) throw new Error('a request needs at least one image');
    let resolve!: (v: Float32Array[]) => void;
    let reject!: (e: Error) => void;
    const result = new Promise<Float32Array[]>((res, rej) => ((resolve = res), (reject = rej)));
    const job: Job = { slots: [], active: [], cursor: 0, offered: 0, results: new Array(tasks.length), settled: false, resolve, reject };
    tasks.forEach((t, index) => job.slots.push({ job, index, process: t.process, guidance: t.guidance, call: null, started: false }));
    try {
      for (const s of job.slots) this.advance(s, undefined);
    } catch (e) {
      for (const s of job.slots) s.process.return(undefined as never);
      throw e;
    }
    job.active = job.slots.filter((s) => s.call !== null);
    this.waiting += job.active.length;
    if (job.active.length === 0) this.settle(job, null);
    else this.jobs.push(job);
    if (!this.running && this.jobs.length > 0) void this.loop();
    return { result, cancel: (reason) => this.cancel(job, reason ?? new Cancelled('cancelled')) };
  }

  /** Resolves once no request is queued or running. */
  idle(): Promise<void> {
    if (this.jobs.every((j) => j.settled)) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Cancel every request (a drain that ran out of time). */
  cancelAll(reason: Error): void {
    for (const j of [...this.jobs]) this.cancel(j, reason);
  }

  private cancel(job: Job, reason: Error): void {
    if (job.settled) return;
    for (const s of job.active) s.process.return(undefined as never);
    this.settle(job, reason);
  }

  /** Resolve or reject a job and release the counts of its unfinished images. */
  private settle(job: Job, error: Error | null): void {
    if (job.settled) return;
    job.settled = true;
    for (const s of job.active) {
      if (s.started) this.inFlight--;
      else this.waiting--;
    }
    job.active = [];
    if (error) job.reject(error);
    else job.resolve(job.results);
    if (this.jobs.every((j) => j.settled)) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Feed a process its model output (undefined: start it) and run it to its next model call or its end. */
  private advance(slot: Slot, output: Float32Array | undefined): void {
    let r = output === undefined ? slot.process.next() : slot.process.next(output);
    while (!r.done && r.value.kind === 'step') r = slot.process.next(undefined);
    if (r.done) {
      slot.call = null;
      slot.job.results[slot.index] = r.value;
      return;
    }
    const call = r.value as ModelCall;
    if (call.shape[0] !== 1) throw new Error(`a served image's process must run at batch 1, got [${call.shape.join(', ')}]`);
    slot.call = call;
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      for (;;) {
        const batch = this.pick();
        if (batch.length === 0) break;
        await this.call(batch);
        // let the event loop take new requests and disconnects between calls, even if the model answered at once
        await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      this.running = false;
    }
  }

  /** The images of the next call: one per request in turn, starting one request further on each call. */
  private pick(): Slot[] {
    this.jobs = this.jobs.filter((j) => !j.settled);
    const J = this.jobs.length;
    if (J === 0) return [];
    for (const j of this.jobs) j.offered = 0;
    const start = this.turn++ % J;
    const out: Slot[] = [];
    for (let more = true; more && out.length < this.opts.maxBatch; ) {
      more = false;
      for (let k = 0; k < J && out.length < this.opts.maxBatch; k++) {
        const j = this.jobs[(start + k) % J]!;
        if (j.offered >= j.active.length) continue;
        out.push(j.active[(j.cursor + j.offered++) % j.active.length]!);
        more = true;
      }
    }
    for (const j of this.jobs) if (j.active.length > 0) j.cursor = (j.cursor + j.offered) % j.active.length;
    for (const s of out) {
      if (!s.started) {
        s.started = true;
        this.waiting--;
        this.inFlight++;
      }
    }
    return out;
  }

  /** Rows of one image: [label] or, guided with s ∉ {0, 1}, [label, ∅] (one row when unconditional). */
  private labels(s: Slot): number[] {
    const K = this.opts.numClasses;
    if (K === 0) return [0];
    const g = s.guidance;
    if (g === undefined || g.scale === 0) return [K];
    return g.scale === 1 ? [g.label] : [g.label, K];
  }

  /** One model call for `batch`, then each image's step. */
  private async call(batch: Slot[]): Promise<void> {
    const [C, H, W] = this.opts.imageShape;
    const per = C * H * W;
    const outPer = this.opts.outChannels * H * W;
    // 1. the rows: each image's x_t at its own timestep, twice for a guided one
    const rowsOf = batch.map((s) => this.labels(s));
    const R = rowsOf.reduce((a, r) => a + r.length, 0);
    const x = new Float32Array(R * per);
    const t = new Int32Array(R);
    const y = this.opts.numClasses > 0 ? new Int32Array(R) : null;
    let row = 0;
    const firstRow: number[] = [];
    batch.forEach((s, i) => {
      firstRow.push(row);
      for (const label of rowsOf[i]!) {
        x.set(s.call!.x, row * per);
        t[row] = s.call!.t;
        if (y) y[row] = label;
        row++;
      }
    });
    // 2. the call
    const t0 = performance.now();
    let out: Float32Array;
    try {
      out = await this.opts.model(x, t, y, [R, C, H, W]);
      if (out.length !== R * outPer) throw new Error(`the model returned ${out.length} values for ${R} rows of ${outPer}`);
    } catch (e) {
      for (const j of new Set(batch.map((s) => s.job))) this.settle(j, e instanceof Error ? e : new Error(String(e)));
      return;
    }
    this.opts.onCall?.(batch.length, R, (performance.now() - t0) / 1000);
    // 3. each image's step; a finished image leaves its request at once
    batch.forEach((s, i) => {
      const job = s.job;
      if (job.settled) return; // cancelled during the call
      const r0 = firstRow[i]!;
      let output: Float32Array;
      if (rowsOf[i]!.length === 2) {
        output = new Float32Array(outPer);
        guideRow(out, r0 * outPer, (r0 + 1) * outPer, per, outPer, s.guidance!.scale, output, 0);
      } else {
        output = out.slice(r0 * outPer, (r0 + 1) * outPer);
      }
      try {
        this.advance(s, output);
      } catch (e) {
        this.cancel(job, e instanceof Error ? e : new Error(String(e)));
        return;
      }
      if (s.call === null) {
        this.inFlight--;
        job.active = job.active.filter((a) => a !== s);
        if (job.active.length === 0) this.settle(job, null);
        else job.cursor %= job.active.length;
      }
    });
  }
}
