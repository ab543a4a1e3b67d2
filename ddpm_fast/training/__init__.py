"""Training: ``config`` (TrainConfig and the recipes; torch-free), ``loop`` (``train``) and
``steps`` (the step runners of each training backend, the epoch draws, the batches)."""
