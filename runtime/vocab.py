"""The bundle's vocabulary, spelled once: the roles, their files per layout, the tensors each
model takes and returns, and what each client expects of them.

A *contract* is a model's tensors in the order a client addresses them by position
(`interpreter->inputs()[i]` in C++): the Arm audiogen app (kleidiai-examples/audiogen/app/
audiogen.cpp in ARM-software/ML-examples) reads the conditioners' outputs 0 and 2 and writes the
DiT's inputs 0–3 without looking at names, shapes or types. Converters choose their own order
(onnx2tf reorders the ONNX graph's inputs; litert-torch keeps the forward's), so the build makes
every shipped file meet the contract (pipeline/core/contract.py) and checks it by position.

A *layout* is a client: the bundle's file names and the client's runtime settings (the XNNPACK
flags the Arm app creates its delegates with, FORCE_FP16 on the decoder only)."""
from dataclasses import dataclass

ROLES = ("conditioners", "dit", "decoder")
MANIFEST = "manifest.json"
# Beside the manifest, once every check of the bundle has passed (stages/attest.py): which
# architectures and clients verified these exact files.
VERIFIED = "verified.json"
SPIECE = "spiece.model"


@dataclass(frozen=True)
class Tensor:
    name: str   # the serving_default signature's name
    dtype: str  # numpy's name


@dataclass(frozen=True)
class Contract:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def rows(self) -> dict:
        """The contract as the manifest records it: position → name, dtype."""
        return {k: [{"position": i, "name": t.name, "dtype": t.dtype} for i, t in enumerate(ts)]
                for k, ts in (("inputs", self.inputs), ("outputs", self.outputs))}


# Conditioners: T5 token ids and mask (int64, as the app writes them) and the clip length; out the
# DiT's cross-attention input, its mask, and the global condition.
IDS, MASK, SECONDS = Tensor("input_ids", "int64"), Tensor("attention_mask", "int64"), Tensor("seconds_total", "float32")
CROSS, CROSS_MASK, GLOBAL = (Tensor("cross_attention_input", "float32"), Tensor("cross_attention_mask", "float32"),
                             Tensor("global_cond", "float32"))
# DiT: one velocity step; decoder: latents → planar stereo audio (left = the first half).
DIT_CROSS, DIT_GLOBAL, DIT_X, DIT_T = (Tensor("cross_attn_cond", "float32"), Tensor("global_cond", "float32"),
                                       Tensor("x", "float32"), Tensor("t", "float32"))
VELOCITY = Tensor("output_0", "float32")
LATENT, AUDIO = Tensor("latent", "float32"), Tensor("output_0", "float32")

CONTRACTS = {
    "conditioners": Contract((IDS, MASK, SECONDS), (CROSS, CROSS_MASK, GLOBAL)),
    "dit": Contract((DIT_CROSS, DIT_GLOBAL, DIT_X, DIT_T), (VELOCITY,)),
    "decoder": Contract((LATENT,), (AUDIO,)),
}

# XNNPACK delegate flags (tensorflow/lite/delegates/xnnpack/xnnpack_delegate.h).
QS8, QU8, FORCE_FP16, DYNAMIC_FULLY_CONNECTED, VARIABLE_OPERATORS = 0x1, 0x2, 0x4, 0x8, 0x10
ENABLE_LATEST_OPERATORS, ENABLE_SUBGRAPH_RESHAPING = 0x40, 0x80
ARM_FLAGS = QS8 | QU8 | DYNAMIC_FULLY_CONNECTED | ENABLE_SUBGRAPH_RESHAPING | ENABLE_LATEST_OPERATORS | VARIABLE_OPERATORS


@dataclass(frozen=True)
class Layout:
    files: dict          # role → bundle file name
    xnnpack_flags: dict  # role → the client's XNNPACK flags (None: the runtime's defaults)
    client: str


LAYOUTS = {
    # The Arm audiogen app: fixed file names whatever the precision, tensors by position.
    "arm": Layout({"conditioners": "conditioners_float32.tflite", "dit": "dit_model.tflite",
                   "decoder": "autoencoder_model.tflite"},
                  {"conditioners": ARM_FLAGS, "dit": ARM_FLAGS, "decoder": ARM_FLAGS | FORCE_FP16},
                  "the Arm audiogen app"),
    # One file per role, loaded by this runtime by signature names.
    "roles": Layout({"conditioners": "conditioners.tflite", "dit": "dit.tflite", "decoder": "autoencoder.tflite"},
                    {r: None for r in ROLES}, "the sao-litert runtime"),
}

# The web client (LiteRT.js in a browser): the app set's DiT and decoder as they are, and the
# conditioners in a file of their own whose ids and mask are int32 (cast to int64 in the graph):
# LiteRT.js holds no int64 tensors. Same positions as the Arm app's.
WEB_CLIENT = "LiteRT.js (npm @litertjs/core) in a browser"
WEB_CONDITIONERS = "conditioners_int32.tflite"
WEB_CONTRACTS = {**CONTRACTS, "conditioners": Contract(
    (Tensor(IDS.name, "int32"), Tensor(MASK.name, "int32"), SECONDS), CONTRACTS["conditioners"].outputs)}
