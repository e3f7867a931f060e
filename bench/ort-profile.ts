/** onnxruntime profiles (Chrome trace events, as onnxruntime-node and onnxruntime-web write them). */

export type ProfileEvent = {
  cat?: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[]; output_type_shape?: Record<string, number[]>[] };
};

/**
 * Kernel time per op type over the model runs after the first `warm` ones: microseconds and kernel count per op,
 * their total, and the kernel events counted (for callers that look further, e.g. at shapes).
 */
export function kernelTimeByOp(events: readonly ProfileEvent[], warm: number): { byOp: Map<string, { us: number; n: number }>; totalUs: number; kernels: ProfileEvent[] } {
  const runs = events.filter((e) => e.name === 'model_run').sort((x, y) => x.ts - y.ts);
  if (runs.length <= warm) throw new Error(`profile: ${runs.length} model runs found, expected more than ${warm}`);
  const from = runs[warm]!.ts;
  const byOp = new Map<string, { us: number; n: number }>();
  const kernels: ProfileEvent[] = [];
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < from) continue;
    const op = e.args?.op_name ?? '?';
    const r = byOp.get(op) ?? { us: 0, n: 0 };
    r.us += e.dur;
    r.n += 1;
    byOp.set(op, r);
    kernels.push(e);
  }
  const sorted = new Map([...byOp].sort((x, y) => y[1].us - x[1].us));
  return { byOp: sorted, totalUs: [...byOp.values()].reduce((a, r) => a + r.us, 0), kernels };
}
