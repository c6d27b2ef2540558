"""torch.export of a re-authored module to a .pt2 file, converted in another process
(stages/litert_convert.py). Plain PyTorch."""
import torch


def export_pt2(model, example: dict, pt2_path, log):
    """Strict torch.export with named (keyword) inputs."""
    with torch.no_grad():
        ep = torch.export.export(model, (), kwargs=example, strict=True)
    torch.export.save(ep, str(pt2_path))
    log.info("exported %d graph nodes", len(ep.graph.nodes))
