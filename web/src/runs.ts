/**
 * The page's runs on the worker: ids, who receives a run's messages, and one run at a time (the worker holds one
 * onnxruntime session; the panels' start buttons are disabled while a run is going or the model is loading).
 */
import type { FromWorker, ToWorker } from './protocol.ts';

/** A message that starts a run. */
export type StartMessage = Exclude<Extract<ToWorker, { id: number }>, { type: 'cancel' }>;
/** A message about a run (an error with id null is the model's, not a run's). */
export type RunMessage = Exclude<FromWorker, { type: 'ready' }>;

export class Runs {
  private readonly owners = new Map<number, (msg: RunMessage) => void>();
  private readonly listeners: (() => void)[] = [];
  private lastId = 0;
  /** the worker has loaded the model */
  ready = false;

  constructor(private readonly send: (msg: ToWorker) => void) {}

  /** Whether a new run may start now. */
  get idle(): boolean {
    return this.ready && this.owners.size === 0;
  }

  /** Calls `f` whenever `idle` may have changed. */
  onChange(f: () => void): void {
    this.listeners.push(f);
    f();
  }

  setReady(): void {
    this.ready = true;
    this.changed();
  }

  /** Send the run `make(id)`; its messages go to `handler` until 'done' or 'error'. */
  start(make: (id: number) => StartMessage, handler: (msg: RunMessage) => void): number {
    const id = ++this.lastId;
    this.owners.set(id, handler);
    this.send(make(id));
    this.changed();
    return id;
  }

  cancel(id: number): void {
    this.send({ type: 'cancel', id });
  }

  /** Route a worker message with a run id to its owner. */
  dispatch(msg: RunMessage): void {
    if (msg.id === null) return;
    const handler = this.owners.get(msg.id);
    if (!handler) return;
    if (msg.type === 'done' || msg.type === 'loaded' || msg.type === 'error') this.owners.delete(msg.id);
    handler(msg);
    this.changed();
  }

  private changed(): void {
    for (const f of this.listeners) f();
  }
}
