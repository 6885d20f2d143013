"""Models: the core ``Model`` (``LoadedModel``), checkpoints, input layouts, devices and memory."""
