"""The Hugging Face Hub: share a trained model as safetensors + JSON, and load it back.

A pushed repo holds

    model.safetensors   the weights (a run's EMA weights unless pushed ``--raw``)
    config.json         the full recipe, the data shape and which package supplied each component
    README.md           a model card: library, tags, recipe, data, last evaluation's metrics
    density.png         the run's density and samples picture (2D data)
    samples.png         a grid of samples (image data)

`EnergyModel.from_pretrained` / ``ebmkit hub pull`` rebuild the model from config.json alone:
no user code, nothing unpickled. Everything goes through huggingface_hub, so its endpoint
(``HF_ENDPOINT``), token (``HF_TOKEN``, ``hf auth login``), cache and offline mode
(``HF_HUB_OFFLINE=1``) apply unchanged.
"""

from ebmkit.hub.card import model_card
from ebmkit.hub.repo import HubError, download, parse_hub_id, push_to_hub, save_pretrained

__all__ = ["HubError", "download", "model_card", "parse_hub_id", "push_to_hub", "save_pretrained"]
