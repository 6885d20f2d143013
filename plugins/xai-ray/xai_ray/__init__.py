"""xai's Ray engine: ``xai explain --engine ray`` (Ray Data ``map_batches`` over an actor pool)."""
