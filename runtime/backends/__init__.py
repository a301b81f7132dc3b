"""Language-model backends: the toy model for exact tests and the
Hugging Face transformers backend (imported on demand, it needs torch)."""

from .toy import ToyLM

__all__ = ["ToyLM"]
