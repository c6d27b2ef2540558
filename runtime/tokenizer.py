"""T5 tokenisation with SentencePiece alone: ids + EOS (1), zero-padded to the model length."""
import numpy as np

EOS, PAD = 1, 0


class Tokenizer:
    def __init__(self, spiece_path, length: int):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=str(spiece_path))
        self.length = length

    def pieces(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def __call__(self, text: str):
        """(input_ids, attention_mask), both int64 [1, length]. Truncation keeps length-1 pieces
        and the EOS, as the original T5 tokenizer does."""
        ids = self.pieces(text)[: self.length - 1] + [EOS]
        input_ids = np.zeros((1, self.length), np.int64)
        mask = np.zeros((1, self.length), np.int64)
        input_ids[0, : len(ids)] = ids
        mask[0, : len(ids)] = 1
        return input_ids, mask
