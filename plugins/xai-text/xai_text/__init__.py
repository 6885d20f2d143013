"""xai's text input kind: token sequences, their datasets, tokenizers and token models."""
