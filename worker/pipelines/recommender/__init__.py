"""Chapter 9: recommender systems (popularity, ALS, matrix factorisation, BPR, LSTM session models).

Exposes `pipeline`; importing this package loads neither TensorFlow nor implicit.
"""

from worker.pipelines.recommender.pipeline import pipeline

__all__ = ["pipeline"]
