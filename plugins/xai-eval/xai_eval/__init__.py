"""xai evaluation plugin: faithfulness metrics, sanity checks, synthetic ground truth and TSR."""
