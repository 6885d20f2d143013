"""xai's image input kind: images flattened to pixels, their datasets and image models."""
