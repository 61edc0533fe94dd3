"""distilkit's Hydra sweeper on Optuna 5: ``python -m train -m hydra/sweeper=optuna ...``."""
