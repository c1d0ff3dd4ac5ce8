"""Chapter 7: a chatbot trained as a sequence-to-sequence model on dialogues (Cornell Movie-Dialogs).

Exposes `pipeline`; importing this package loads no TensorFlow.
"""

from worker.pipelines.chatbot.pipeline import pipeline

__all__ = ["pipeline"]
