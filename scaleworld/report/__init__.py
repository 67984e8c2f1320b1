"""The report: `scaleworld report` (terminal.py), its figures, exports and sections."""

SECTION_NAMES = ("jobs", "tokenizers", "experts", "regimes", "curves", "baselines", "open-loop", "single-vs-joint",
                 "fits", "matched", "stabilises", "improvement", "scores", "versus-random", "failures",
                 "glossary")
"""The report's sections after the findings, in order (`--section NAME`; terminal.SECTIONS renders each).
Named here, light, so that the CLI lists them without importing the report."""
