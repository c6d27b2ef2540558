"""litert-torch conversion of a saved torch.export program (shared by the DiT and decoder)."""
import time


def pt2_to_tflite(pt2_path, tflite_path, log):
    import torch
    t0 = time.perf_counter()
    ep = torch.export.load(str(pt2_path))
    import litert_torch
    log.info("loaded %s in %.1f s; converting", pt2_path.name, time.perf_counter() - t0)
    # ep.module() cannot be put in eval mode; the re-authored modules have no train-only paths.
    edge = litert_torch.convert(ep.module(), (), sample_kwargs=ep.example_inputs[1])
    edge.export(str(tflite_path))
    log.info("converted in %.1f s: %.2f MB", time.perf_counter() - t0, tflite_path.stat().st_size / 1e6)
