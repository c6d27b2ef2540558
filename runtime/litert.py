"""Running .tflite files through ai_edge_litert by signature and tensor names, never by
assumed tensor order."""
import numpy as np

SIGNATURE = "serving_default"


class Model:
    def __init__(self, path, threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter
        self.path = str(path)
        self.interpreter = Interpreter(model_path=self.path, num_threads=threads)
        sigs = self.interpreter.get_signature_list()
        if SIGNATURE not in sigs:
            raise ValueError(f"{path}: no '{SIGNATURE}' signature (has {sorted(sigs)})")
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()

    def __call__(self, **inputs) -> dict:
        feed = {k: np.asarray(v, dtype=self.inputs[k]["dtype"]) for k, v in inputs.items()}
        return self.runner(**feed)

    def describe(self) -> dict:
        """Signature name → raw tensor index, shape, dtype (what a C++ app needs)."""
        def rows(details):
            return [{"name": n, "index": int(d["index"]), "shape": [int(s) for s in d["shape"]],
                     "dtype": np.dtype(d["dtype"]).name} for n, d in sorted(details.items())]
        return {"signature": SIGNATURE, "inputs": rows(self.inputs), "outputs": rows(self.outputs)}
