"""torch.export of a re-authored module to a .pt2 file, converted in another process
(stages/litert_convert.py). Plain PyTorch."""
import torch


def export_pt2(model, example: dict, pt2_path, log):
    """Strict torch.export with named (keyword) inputs, saved byte-reproducibly."""
    with torch.no_grad():
        ep = torch.export.export(model, (), kwargs=example, strict=True)
    _reproducible(ep)
    # torch.export.save names the archive's root folder after a path's file name (the runner's
    # temporary name holds its pid); a file object gets the fixed root "archive".
    with open(pt2_path, "wb") as f:
        torch.export.save(ep, f)
    log.info("exported %d graph nodes", len(ep.graph.nodes))


def _reproducible(ep):
    """torch 2.13's .pt2 (models/model.json) holds each node's Python stack trace (absolute paths
    of this checkout), its provenance (`from_node`, with id() of intermediate graphs) and keys its
    nn_module_stack by id() of the live modules: two exports of one model differ, and the cache
    could never see two builders agree. Traces and provenance go; the module keys become their
    order of first appearance (the paths and types they name stay)."""
    ids: dict = {}
    for node in ep.graph.nodes:
        node.meta.pop("stack_trace", None)
        node.meta.pop("from_node", None)
        if stack := node.meta.get("nn_module_stack"):
            node.meta["nn_module_stack"] = {ids.setdefault(k, f"m{len(ids)}"): v for k, v in stack.items()}
