"""The report: `scaleworld report` (terminal.py), its figures, exports and sections."""

SECTION_NAMES = ("jobs", "tokenizers", "experts", "regimes", "sources", "curves", "baselines", "open-loop",
                 "single-vs-joint", "fits", "matched", "stabilises", "improvement", "scores", "versus-random",
                 "exploitation", "failures", "glossary")
"""The report's sections after the findings, in order (`--section NAME`; terminal.SECTIONS renders each).
Named here, light, so that the CLI lists them without importing the report."""

COLLAPSE_ABOVE = 8
"""A per-game table of more games than this shows what differs (scaleworld.report.collapse; `report
--full`: every row): 8 rows of a game each fit a screen, 26 do not (the 26-game toy study's report was
2,066 lines at 80 columns with every row shown)."""
