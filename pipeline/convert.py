"""torch.export → .pt2 → litert-torch, shared by the DiT and decoder routes."""
import time


def export_pt2(model, example: dict, pt2_path, log):
    """Strict torch.export with named (keyword) inputs; saved for conversion in another process."""
    import torch
    with torch.no_grad():
        ep = torch.export.export(model, (), kwargs=example, strict=True)
    torch.export.save(ep, str(pt2_path))
    log.info("exported %d graph nodes", len(ep.graph.nodes))


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
