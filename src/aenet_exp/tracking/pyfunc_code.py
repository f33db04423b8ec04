"""The code of the logged pyfunc model: MLflow runs this file to build the model when loading it."""

from mlflow.models import set_model

from aenet_exp.tracking.pyfunc import PotentialModel

set_model(PotentialModel())
