"""Access to the encoder layers of a BERT-style Hugging Face model."""

from __future__ import annotations

from torch import nn

from distilkit.errors import ConfigError


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """``model.base_model.encoder.layer`` (e.g. ``bert.encoder.layer`` of ``BertForSequenceClassification``)."""
    try:
        return model.base_model.encoder.layer
    except AttributeError as err:
        raise ConfigError(
            "pruner", f"prunes BERT-style encoders (base_model.encoder.layer); the student {type(model).__name__} has none: use pruner=none"
        ) from err


def encoder_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every ``nn.Linear`` of the encoder layers by full name: per layer the query, key, value and
    attention-output projections and the two FFN projections (not embeddings, pooler, classifier)."""
    layers = encoder_layers(model)
    prefix = next(name for name, module in model.named_modules() if module is layers)
    return {f"{prefix}.{name}": module for name, module in layers.named_modules() if isinstance(module, nn.Linear)}
