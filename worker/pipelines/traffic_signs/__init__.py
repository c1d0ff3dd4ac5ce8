"""Chapter 1: recognising traffic signs with a convolutional network (GTSRB).

Exposes `pipeline`; importing this package loads neither TensorFlow nor scikit-image.
"""

from worker.pipelines.traffic_signs.pipeline import pipeline

__all__ = ["pipeline"]
