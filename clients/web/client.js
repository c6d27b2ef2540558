// The bundle's web client: LiteRT.js in a browser, run by stages/verify_web.py.
// It reads /job.json, runs each model on the given inputs by position (a Tensor[] in the file's
// input order, as a web app that follows the manifest's contract does), then one whole generation
// (conditioners, the ping-pong sampler, the decoder) on given noise, and posts every output back
// as raw little-endian bytes: POST /out/<id>/<position>. It ends with POST /done (JSON).
import {loadAndCompile, loadLiteRt, Tensor} from '@litertjs/core';

const ARRAYS = {float32: Float32Array, int32: Int32Array};

async function fetchArray(spec) {
  const bytes = await (await fetch(spec.data)).arrayBuffer();
  return new ARRAYS[spec.dtype](bytes);
}

async function post(path, body) {
  const r = await fetch(path, {method: 'POST', body});
  if (!r.ok) throw new Error(`POST ${path}: ${r.status}`);
}

async function run(model, arrays, shapes) {
  const inputs = arrays.map((a, i) => new Tensor(a, shapes[i]));
  const outputs = await model.run(inputs);
  const result = [];
  for (const t of outputs) {
    const cpu = t.accelerator === 'wasm' ? t : await t.moveTo('wasm');
    result.push(cpu.toTypedArray().slice());
    cpu.delete();
  }
  inputs.forEach((t) => t.delete());
  return result;
}

let doing = 'loading LiteRT.js';  // what the page was doing, for an error's one line

async function main() {
  const job = await (await fetch('/job.json')).json();
  const seconds = {};
  let t0 = performance.now();
  await loadLiteRt(job.wasm);
  seconds.load_runtime = (performance.now() - t0) / 1000;
  // One model in wasm memory at a time, as a web app of this size must: wasm32 has 4 GB, and at
  // real size the decoder's arena does not fit beside the conditioners and the DiT (the page then
  // dies with "table index is out of bounds").
  async function load(file) {
    doing = `loading ${file}`;
    const t = performance.now();
    const m = await loadAndCompile(new Uint8Array(await (await fetch(file)).arrayBuffer()),
                                   {accelerator: job.accelerator});
    seconds[`load ${file}`] = (performance.now() - t) / 1000;
    return m;
  }
  for (const inv of job.invokes) {
    const m = await load(inv.file);
    doing = `running ${inv.file}`;
    const arrays = await Promise.all(inv.inputs.map(fetchArray));
    t0 = performance.now();
    const outs = await run(m, arrays, inv.inputs.map((s) => s.shape));
    seconds[inv.id] = (performance.now() - t0) / 1000;
    m.delete();
    for (let i = 0; i < outs.length; i++) await post(`/out/${inv.id}/${i}`, outs[i]);
  }
  const g = job.generate;
  if (g) {
    const ids = await fetchArray(g.ids), mask = await fetchArray(g.mask);
    const noise = await Promise.all(g.noise.map(fetchArray));
    t0 = performance.now();
    const cond = await load(g.files.conditioners);
    doing = `generating: ${g.files.conditioners}`;
    const c = await run(cond, [ids, mask, new Float32Array([g.seconds])], [g.ids.shape, g.mask.shape, [1]]);
    cond.delete();
    const cross = c[g.cross_at], glob = c[g.global_at];
    let x = noise[0];
    const dit = await load(g.files.dit);
    const t1 = performance.now();
    for (let i = 0; i < g.steps; i++) {
      doing = `generating: ${g.files.dit}, step ${i + 1}`;
      const t = g.schedule[i], next = g.schedule[i + 1];
      const [v] = await run(dit, [cross, glob, x, new Float32Array([t])],
                            [g.cross_shape, g.global_shape, g.latent_shape, [1]]);
      const y = new Float32Array(x.length);
      for (let k = 0; k < x.length; k++) y[k] = (1 - next) * (x[k] - t * v[k]) + next * noise[i + 1][k];
      x = y;
    }
    seconds.dit_step = (performance.now() - t1) / 1000 / g.steps;
    dit.delete();
    const dec = await load(g.files.decoder);
    doing = `generating: ${g.files.decoder}`;
    const [audio] = await run(dec, [x], [g.latent_shape]);
    dec.delete();
    seconds.generate = (performance.now() - t0) / 1000;
    await post('/out/generate/0', x);
    await post('/out/generate/1', audio);
  }
  // What the browser offers besides wasm (reported, not used: headless Chromium has no GPU here).
  const adapter = navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
  const webgpu = !navigator.gpu ? 'no navigator.gpu' : adapter ? 'an adapter' : 'navigator.gpu, no adapter';
  await post('/done', JSON.stringify({accelerator: job.accelerator, webgpu, seconds}));
}

main().catch((e) => post('/done', JSON.stringify({error: String(e && e.stack || e), doing})));
