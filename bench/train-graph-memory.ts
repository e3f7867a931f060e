/**
 * What the training graph keeps from its forward pass for its backward one: the forward tensors (those the loss
 * depends on) that some gradient node reads, which onnxruntime must hold from the time they are made until the
 * backward pass is done. Summed by the op that makes them and by size class, at the bench's batch and preset. A
 * static count: the peak memory (bench:unet's peak_rss_mb) is this plus the largest backward working set, the
 * weights and the runtime.
 *
 *   node --import tsx bench/train-graph-memory.ts [--config mnist-28] [--batch 64]
 */
import { parseArgs } from 'node:util';
import { valueAndGrad } from '../src/engine/autodiff.ts';
import { topoSort, type Node } from '../src/engine/graph.ts';
import { input, type Tensor } from '../src/engine/tensor.ts';
import { treeFlatten, treeMap } from '../src/engine/tree.ts';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { trainingLossesGraph } from '../src/diffusion/graph-losses.ts';
import { UNET_CONFIGS, initUNet, unet } from '../src/models/unet.ts';
import { defaultTrainConfig } from '../src/train/config.ts';
import { Rng } from '../src/rng.ts';

const { values } = parseArgs({ options: { config: { type: 'string', default: 'mnist-28' }, batch: { type: 'string', default: '64' } } });
const name = values.config!;
if (!Object.hasOwn(UNET_CONFIGS, name)) throw new Error(`unknown preset ${name}`);
const config = defaultTrainConfig(name);
const m = config.model;
const B = Number(values.batch);
const xShape = [B, m.inChannels, m.imageSize, m.imageSize];
const params = treeMap(initUNet(m, new Rng(0)), (p, path) => input(`p:${path}`, p.shape));
const diffusion = GaussianDiffusion.fromConfig(config.diffusion.schedule);
const x0 = input('x0', xShape);
const t = input('t', [B], 'int64');
const noise = input('noise', xShape);
const { value, grads } = valueAndGrad((p) =>
  trainingLossesGraph(diffusion, (xt, tf) => unet(m, p as unknown as Record<string, Tensor>, xt, tf), x0, t, noise, {
    meanType: config.diffusion.meanType,
    varType: config.diffusion.varType,
  }).loss,
)(params);
const forward = new Set(topoSort([value.node]));
const all = topoSort([value.node, ...treeFlatten(grads).map(([, g]) => g.node)]);
const bytes = (n: Node) => 4 * n.shape.reduce<number>((a, d) => a * (typeof d === 'number' ? d : B), 1);
const kept = new Set<Node>();
for (const n of all) if (!forward.has(n)) for (const i of n.inputs) if (forward.has(i) && i.op !== 'Input' && i.op !== 'Constant') kept.add(i);
const big = 4 * B * m.baseChannels * 4; // "activation-size": at least a quarter of the first level's channels per pixel... of one image row band
const byOp = new Map<string, { count: number; mb: number }>();
let total = 0;
for (const n of kept) {
  const b = bytes(n);
  total += b;
  const key = `${n.op}${b >= big * m.imageSize * m.imageSize / 4 ? '' : ' (small)'}`;
  const e = byOp.get(key) ?? { count: 0, mb: 0 };
  e.count++;
  e.mb += b / 1e6;
  byOp.set(key, e);
}
const rows = [...byOp].sort((a, b) => b[1].mb - a[1].mb).map(([op, e]) => ({ op, count: e.count, mb: Math.round(e.mb * 10) / 10 }));
console.log(JSON.stringify({ bench: 'train-graph-memory', config: name, batch: B, forward_nodes: forward.size, backward_nodes: all.length - forward.size, kept: kept.size, kept_mb: Math.round(total / 1e5) / 10, by_op: rows }));
