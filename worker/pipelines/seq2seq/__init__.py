"""Sequence-to-sequence machinery shared by chapter 6 (translation) and chapter 7 (chatbot).

- `text`: the book's cleaning and tokenisation, per-side vocabularies with `_PAD _GO _EOS _UNK`,
  padding (source left-padded, target `GO ... EOS` right-padded) and readable detokenisation;
- `bleu`: corpus BLEU, for held-out evaluation (the book reports none);
- `model` (Keras): an encoder-decoder with attention, GRU or LSTM;
- `decoding` (TensorFlow): greedy, beam search and temperature sampling through compiled functions
  with fixed padded shapes, token by token for streaming.

Importing this package, `text` or `bleu` loads no TensorFlow; `model` and `decoding` do, and are
imported by pipelines inside `train` and `load` only.
"""
