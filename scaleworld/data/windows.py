"""The window sets a training run can draw from its episodes, without torch (the spec and the study
graph check the choice): see `scaleworld.data.sampling` for what each one is."""

WINDOWS = ("inside", "edge_fair")
"""``inside`` (the default): windows that fit in an episode; ``edge_fair``: windows clipped at the
episode's ends, so every step is covered equally."""
