"""The app side: text → audio from a LiteRT bundle. An app-side Python (and the aarch64 check)
runs this package alone: ai-edge-litert, numpy, sentencepiece, soundfile and xxhash, nothing of
the build (`pipeline/`, `stages/`) and no torch."""
