"""mmkd: KARMMA multimodal knowledge distillation on a feature cache."""

__version__ = "0.1.0"
