"""Token ids every layer agrees on (sentencepiece models are trained to use them), and the
example id of a batch row that holds no example."""

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

FILLER = -1
"""Example id of a row that holds no example (only padding) in a batch."""
