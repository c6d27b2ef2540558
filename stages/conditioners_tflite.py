"""Stage `conditioners_tflite`: onnx2tf → conditioners_float32.tflite + conditioners_float16.tflite.

onnx2tf's CLI does everything in one process: ONNX → Keras, a Keras saved_model export (which
traces every layer with its weights as graph constants: 485 s and 20.8 GB at T5-base size), then
both TFLite conversions in the same process (float16 was silently lost to the memory limit). So
the step runs as three child processes: onnx2tf.convert(disable_model_save=True) to the Keras
model, saved as one serving_default signature; then one fresh TFLiteConverter per precision with
onnx2tf's own converter settings. Children also keep onnx2tf's global warning filter out of the
runner. The step fails unless both files exist, whatever the children's exit status says.
onnx2tf does not keep the ONNX graph's tensor order (input_ids, attention_mask, seconds_total came
out as attention_mask, seconds_total, input_ids): both files are put in the conditioners' client
order (runtime/vocab.py) after conversion."""
import ast
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline.core.contract import conform
from pipeline.core.errors import InputError
from pipeline.core.procs import child_env, die_with_parent
from runtime.vocab import CONTRACTS

log = logging.getLogger("sao.conditioners_tflite")

# Arguments this stage sets itself; the profile's `conditioners.onnx2tf` may set any other.
OWNED = {"input_onnx_file_path", "onnx_graph", "output_folder_path", "disable_model_save"}


def run(inputs, outputs, config):
    _check_options(config["onnx2tf"])
    work = Path(inputs["onnx"]).parent / "work" / "onnx2tf"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    onnx_path = work / "conditioners.onnx"  # onnx2tf rewrites its input file (simplified): a copy
    shutil.copyfile(inputs["onnx"], onnx_path)
    options = json.dumps(config["onnx2tf"])
    _child("saved_model", str(onnx_path), str(work), options)
    for precision in ("float32", "float16"):
        _child("tflite", str(work), precision, str(outputs[precision]), options)
    missing = [outputs[p].name for p in ("float32", "float16")
               if not outputs[p].is_file() or outputs[p].stat().st_size == 0]
    if missing:
        raise RuntimeError(f"conditioners_tflite wrote no {', '.join(missing)}")
    for precision in ("float32", "float16"):
        conform(outputs[precision], CONTRACTS["conditioners"])
    log.info("float32 %.2f MB, float16 %.2f MB",
             outputs["float32"].stat().st_size / 1e6, outputs["float16"].stat().st_size / 1e6)


def _check_options(options):
    """Catch a misspelt option before minutes of work: read onnx2tf.convert's parameters from its
    source (importing onnx2tf costs TensorFlow's import and its global warning filter)."""
    source = Path(importlib.util.find_spec("onnx2tf").submodule_search_locations[0]) / "onnx2tf.py"
    convert = next(n for n in ast.parse(source.read_text()).body
                   if isinstance(n, ast.FunctionDef) and n.name == "convert")
    allowed = {a.arg for a in convert.args.args} - OWNED
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InputError(None, "conditioners.onnx2tf",
                         f"not an onnx2tf.convert argument (or set by this stage): {', '.join(unknown)}")


def _child(*args):
    cmd = [sys.executable, "-m", "stages.conditioners_tflite", *args]
    log.info("%s …", args[0] if args[0] == "saved_model" else f"{args[2]} .tflite")
    rc = subprocess.call(cmd, cwd=Path(__file__).parents[1], env=child_env(), preexec_fn=die_with_parent)
    if rc:
        raise RuntimeError(f"conditioners_tflite child `{' '.join(args[:2])}` exited {rc}")


def _saved_model(onnx_path, work, options):
    """onnx2tf to a Keras model, saved with only its serving signature (one trace)."""
    import onnx2tf
    import tensorflow as tf
    model = onnx2tf.convert(input_onnx_file_path=onnx_path, output_folder_path=work,
                            disable_model_save=True, **options)
    specs = [tf.TensorSpec(t.shape, t.dtype, t.name) for t in model.inputs]
    serve = tf.function(lambda *xs: dict(zip(model.output_names, model(xs))), input_signature=specs)
    module = tf.Module()
    module.serve = serve
    tf.saved_model.save(module, f"{work}/saved_model",
                        signatures={"serving_default": serve.get_concrete_function()})


def _tflite(work, precision, out, options):
    """The TFLite conversion onnx2tf does (same settings, same two options steer it), from the
    saved_model, in a process of its own."""
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_saved_model(f"{work}/saved_model")
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    conv.unfold_batchmatmul = bool(options.get("enable_batchmatmul_unfold", False))
    if precision == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        if options.get("enable_accumulation_type_float16"):
            conv.target_spec._experimental_supported_accumulation_type = tf.dtypes.float16
    Path(out).write_bytes(conv.convert())


if __name__ == "__main__":
    step, *args = sys.argv[1:]
    *paths, options = args
    {"saved_model": _saved_model, "tflite": _tflite}[step](*paths, json.loads(options))
