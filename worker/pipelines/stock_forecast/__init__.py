"""Chapter 5: forecasting the next value of a time series (a noisy cosine, stock prices).

Exposes `pipeline`; importing this package loads neither TensorFlow nor matplotlib.
"""

from worker.pipelines.stock_forecast.pipeline import pipeline

__all__ = ["pipeline"]
