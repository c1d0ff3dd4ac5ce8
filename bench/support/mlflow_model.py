"""Run with MLflow's virtualenv: save a dlsite traffic-sign Keras model as an MLflow model.

    python mlflow_model.py MODEL_KERAS DESTINATION FLAVOR

FLAVOR `tensorflow` is what `mlflow.tensorflow.log_model(model)` stores, served with Keras'
`model.predict()` per request; `keras-export` is `mlflow.keras.log_model(model, save_exported_model=True)`,
a SavedModel export served through its compiled `serve` function.
"""

import sys

import keras
import mlflow
import numpy as np
from mlflow.models import infer_signature

model_file, destination, flavor = sys.argv[1:4]
model = keras.models.load_model(model_file, compile=False)
example = np.zeros((1, *model.input_shape[1:]), dtype=np.float32)
signature = infer_signature(example, np.asarray(model(example)))
if flavor == "tensorflow":
    mlflow.tensorflow.save_model(model, destination, signature=signature)
elif flavor == "keras-export":
    mlflow.keras.save_model(model, destination, save_exported_model=True, signature=signature)
else:
    raise SystemExit(f"unknown flavor {flavor!r}")
