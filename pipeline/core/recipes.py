"""Quantization recipes by name, as data: the entries stages/quantize.py hands to
ai-edge-quantizer's RecipeManager, in order (a later entry whose regex matches an op's scope —
its output tensor names, which litert-torch derives from the module path — overrides an earlier
one). The entries are a quantize stage's config, so editing one re-keys only the stages using it.

An entry: {"kind": "dynamic" (int weights, int compute on activations quantized per call) |
"weight_only" (int weights dequantized to float) | "float" (float16 weights, FLOAT_CASTING) |
"none" (left float32), "bits", "regex"}."""


def _entry(kind: str, bits: int, regex: str = ".*") -> dict:
    return {"kind": kind, "bits": bits, "regex": regex}


RECIPES: dict[str, list[dict]] = {
    "dynamic_wi8_afp32": [_entry("dynamic", 8)],
    "weight_only_wi8_afp32": [_entry("weight_only", 8)],
    "dynamic_wi4_afp32": [_entry("dynamic", 4)],
    # DiT: int4 on the feed-forward layers (about 60 % of the weights), int8 elsewhere.
    "dynamic_wi4ff_wi8_afp32": [_entry("dynamic", 8), _entry("dynamic", 4, r"\.FeedForward_")],
    "float16": [_entry("float", 16)],
    # Decoder: int8 on every conv but the first (latent → channels) and the last (→ audio), the
    # two directly under the decoder's top-level Sequential.
    "dynamic_int8_float_ends": [_entry("dynamic", 8),
                                _entry("none", 0, r"ExportDecoder/[^/]*Sequential_layers/[^/]*WNConv1d_\d+;")],
}
RECIPES["dynamic_int8"] = RECIPES["dynamic_wi8_afp32"]  # the decoder precision's name
