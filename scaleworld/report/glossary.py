"""The words the report uses, each with one meaning (`scaleworld report --section glossary`, and the
last section of the full report). The definitions restate the ones next to the code that computes
each number; a term's home is named where a reader needs more."""

from __future__ import annotations

from typing import Any

from scaleworld.report import COLLAPSE_ABOVE

GLOSSARY: dict[str, str] = {
    # the scaling regimes (scaleworld/analysis/regimes.py: the rule, its tests and its order)
    "monotonic": "held-out NLL improves with size by more than the margin and bigger is never worse by the margin",
    "classical": "a U: an interior size is best, the largest is worse than it and the smallest worse too, by more "
                 "than the margin, while bigger models fit their training split better (overfitting)",
    "degrading": "bigger is worse: the largest size is worse than the smallest by more than the margin, not a U, "
                 "and bigger models fit their training split better",
    "optimisation_limited": "a classical or degrading shape whose larger models fit their training split worse "
                            "too: an optimisation failure, not overfitting",
    "double_descent": "worse then better: an interior bump above both sides by more than the margin",
    "flat": "every size within the margin of every other (an equivalence test, not a missed effect)",
    "inconclusive": "the evidence does not decide: too few sizes or seeds, or no test reached alpha; the evidence "
                    "column says which fell short",
    # modes and their comparisons (scaleworld/training/config.py: MATCH_RULES)
    "single": "a world model trained on one game",
    "joint": "one world model trained on every game of the study, each game as often",
    "matched": "a single-game model given what the joint run gives a game (the rule in the spec: steps, tokens "
               "or data), so that joint vs matched separates sharing games from training longer",
    "joint_short": "a joint model given a single run's total steps",
    "(base)": "the study as its spec states it; other names are its ablations",
    # numbers
    "held-out NLL": "negative log-likelihood of the next frame's tokens on the held-out episodes, nats per frame; "
                    "lower is better",
    "margin": "the smallest difference in held-out NLL the rule calls an effect (nats per frame)",
    "P(x beats y)": "the probability that a run of x beats a run of y of the same game and size, run against run, "
                    "averaged over games; 0.5 is no difference (rliable's probability of improvement)",
    "normalised score": "(score - random) / (upper anchor - random), the anchors named under the scores table",
    "median": "of the games' mean normalised scores (one value per game)",
    "IQM": "the interquartile mean over every run of every game: the lowest and highest quarter of the runs "
           "dropped (rliable's); 'of game means' where a table says so",
    "[95% CI]": "a bootstrap interval over world-model seeds (each with its policy trials), expanded for few seeds",
    "seeds per size": "in the curves table: the seeds measured at each size, smallest size first (2/2/2)",
    "group n (k games)": f"at more than {COLLAPSE_ABOVE} games, the games whose rows agree in every other column "
                         "share a row, listed under the table (--full: a row per game)",
    "every row: c = v": f"at more than {COLLAPSE_ABOVE} games, a column with one value in every row, said once "
                        "under its table",
    "p (BH)": "a p-value after the Benjamini-Hochberg adjustment over the games (or cells) of its table",
    "reads as": "the exploitation diagnostic's reading of a cell: 'model wrong on the policy's states' (on the "
                "policy's own real episodes the model predicts more reward than the game pays, or its NLL there is "
                "above the held-out NLL), 'rollouts drift' (right on those states, yet imagined reward exceeds the "
                "real), 'consistent' (neither)",
    "CHECK": "a failed check: a game the tokenizer gate refused, a model not beating the unigram and "
             "copy-last-frame baselines, policies beating random nowhere, a weak expert",
}


def render_glossary(console: Any) -> None:
    """Each term and its meaning, one per line."""
    console.print("glossary (each word has one meaning in this report)")
    for term, meaning in GLOSSARY.items():
        console.print(f"  {term}: {meaning}")
