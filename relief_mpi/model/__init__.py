"""The modality-aware model (per-modality encoders, fusion, head) and its block partition."""
