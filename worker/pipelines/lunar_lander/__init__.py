"""Chapter 10: a Deep Q-Network learns to land gymnasium's LunarLander.

Exposes `pipeline`; importing this package loads neither gymnasium nor TensorFlow.
"""

from worker.pipelines.lunar_lander.pipeline import pipeline

__all__ = ["pipeline"]
