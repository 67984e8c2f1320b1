"""The held-out split's defaults, without torch: the study spec reads them, and the training runs
(`scaleworld.training.runs`) and `split_episodes` use them, so every model of a study is scored on the
same episodes unless the spec says otherwise."""

VAL_FRACTION = 0.1
"""Share of each game's episodes held out for fidelity (the same split for every model)."""
SPLIT_SEED = 0
"""Seed of the split of episodes into training and held-out ones."""
VALIDATION_FRACTION = 0.0
"""Share of each game's training episodes kept out of training as a validation split (never a
held-out one); 0: none."""
