"""Make a .tflite file meet its client contract (runtime/vocab.py): the order of the main
subgraph's input and output tensors is what a C++ client sees as `interpreter->inputs()[i]`.

The order is an int32 vector in the flatbuffer; it is permuted in place (same length, same
tensors, nothing else touched), so the signature names, the weights and every op stay as they
were and the file keeps its size. Re-packing through the schema's object API (`ModelT` → `Pack`)
is not an option: it breaks files whose buffers live after the flatbuffer ("Constant buffer N
specified an out of range offset")."""
import mmap
from pathlib import Path

import numpy as np

from runtime.litert import ContractError  # noqa: F401 - raised here too
from runtime.vocab import Contract


def conform(path, contract: Contract) -> bool:
    """Permute `path`'s main subgraph inputs and outputs into the contract's order, in place.
    Returns True when the file changed."""
    from ai_edge_litert.schema_py_generated import Model
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as buf:
        model = Model.GetRootAs(buf, 0)
        if model.SignatureDefsLength() != 1:
            raise ContractError(f"{path}: {model.SignatureDefsLength()} signatures; the contract needs exactly one")
        sig = model.SignatureDefs(0)
        graph = model.Subgraphs(sig.SubgraphIndex())
        changed = [_permute(path, "input", contract.inputs, [sig.Inputs(i) for i in range(sig.InputsLength())],
                            graph.InputsAsNumpy()),
                   _permute(path, "output", contract.outputs, [sig.Outputs(i) for i in range(sig.OutputsLength())],
                            graph.OutputsAsNumpy())]
        if any(changed):
            buf.flush()
    return any(changed)


def _permute(path, kind, want, signature, vector) -> bool:
    """Write the tensor indices of `want`'s names (from the signature) into `vector`, a view of
    the subgraph's list in the mapped file; the view is gone when this returns."""
    by_name = {t.Name().decode(): t.TensorIndex() for t in signature}
    if sorted(by_name) != sorted(t.name for t in want) or len(vector) != len(want):
        raise ContractError(f"{path}: {kind}s {sorted(by_name)}; the contract names {[t.name for t in want]}")
    order = np.array([by_name[t.name] for t in want], dtype=vector.dtype)
    if sorted(order) != sorted(vector):
        raise ContractError(f"{path}: the signature's {kind}s are not the subgraph's")
    if np.array_equal(order, vector):
        return False
    vector[:] = order
    return True


def cast_inputs(src, dst, contract: Contract):
    """Write `src` to `dst` with every input the contract wants as int32 but the file takes as
    int64 taken as int32 and cast to int64 inside the graph (a CAST op first), for clients whose
    buffers hold no int64 (LiteRT.js: "Element type INT64 is not supported"). Same position, same
    signature name. Re-packed through the schema's object API, with every buffer stored after the
    flatbuffer (the quantizer writes them so; packing those as they are breaks the file: see the
    module doc) moved inside it: for files under flatbuffers' 2 GB, as the conditioners are."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb
    raw = bytearray(Path(src).read_bytes())
    model = fb.ModelT.InitFromPackedBuf(raw, 0)
    for buffer in model.buffers:
        if buffer.offset > 1:  # (offset, size) into the file, after the flatbuffer
            buffer.data = np.frombuffer(raw, np.uint8, buffer.size, buffer.offset)
            buffer.offset = buffer.size = 0
    sig = model.signatureDefs[0]
    graph = model.subgraphs[sig.subgraphIndex]
    codes = [c.builtinCode for c in model.operatorCodes]
    if fb.BuiltinOperator.CAST not in codes:
        code = fb.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.CAST
        code.version = 1
        model.operatorCodes.append(code)
        codes.append(fb.BuiltinOperator.CAST)
    by_name = {t.name.decode(): t for t in sig.inputs}
    for want in contract.inputs:
        entry = by_name[want.name]
        old = graph.tensors[entry.tensorIndex]
        if want.dtype != "int32" or old.type != fb.TensorType.INT64:
            continue
        new = fb.TensorT()
        new.shape, new.type, new.buffer, new.name = old.shape, fb.TensorType.INT32, 0, old.name + b"_int32"
        graph.tensors.append(new)
        index = len(graph.tensors) - 1
        cast = fb.OperatorT()
        cast.opcodeIndex, cast.inputs, cast.outputs = codes.index(fb.BuiltinOperator.CAST), [index], [entry.tensorIndex]
        cast.builtinOptionsType = fb.BuiltinOptions.CastOptions
        cast.builtinOptions = fb.CastOptionsT()
        cast.builtinOptions.inDataType, cast.builtinOptions.outDataType = fb.TensorType.INT32, fb.TensorType.INT64
        graph.operators.insert(0, cast)
        graph.inputs = [index if i == entry.tensorIndex else i for i in graph.inputs]
        entry.tensorIndex = index
    builder = flatbuffers.Builder(Path(src).stat().st_size + (1 << 20))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    Path(dst).write_bytes(builder.Output())
