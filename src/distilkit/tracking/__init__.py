from distilkit.tracking.mlflow_run import MlflowTracker, flatten

__all__ = ["MlflowTracker", "flatten"]
