"""Stage `conditioners_tflite`: onnx2tf (as a subprocess; it silences Python warnings globally)
→ conditioners_float32.tflite + conditioners_float16.tflite. onnx2tf's exit status is no proof:
the step fails unless both files exist."""
import logging
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("sao.conditioners_tflite")


def run(inputs, outputs, config):
    onnx_path = Path(inputs["onnx"])
    work = onnx_path.parent / "work" / "onnx2tf"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    onnx2tf = Path(sys.executable).parent / "onnx2tf"
    cmd = [str(onnx2tf), "-i", str(onnx_path), "-o", str(work), *config["onnx2tf_args"]]
    log.info("running %s", " ".join(cmd[1:]))
    rc = subprocess.call(cmd)
    stem = onnx_path.stem
    missing = []
    for precision in ("float32", "float16"):
        produced = work / f"{stem}_{precision}.tflite"
        if not produced.is_file() or produced.stat().st_size == 0:
            missing.append(produced.name)
            continue
        shutil.copyfile(produced, outputs[precision])
    if missing:
        raise RuntimeError(f"onnx2tf (exit {rc}) did not write {', '.join(missing)}")
    log.info("onnx2tf exit %d; float32 %.2f MB, float16 %.2f MB", rc,
             outputs["float32"].stat().st_size / 1e6, outputs["float16"].stat().st_size / 1e6)
