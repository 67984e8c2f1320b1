"""The stated assumptions of `scaleworld plan`'s device-hours when nothing is measured (`plan
--calibrate` measures every kind's rate on the machine it runs on instead).

Each kind states its job's seconds under these (`Stage.assumed_seconds`): model work as FLOPs at an
assumed utilisation of an H100 (training 6 x parameters per token; inference 2 x; the tokenizer's
convolutions by formula, `tokenizer_macs`), emulator work as agent steps at an assumed rate, the
analysis in proportion to its inputs and bootstrap replicates. They are lower bounds where the work
is not FLOP-bound (small models, one frame at a time in the real game), and say so.
"""

from __future__ import annotations

ASSUMED_PEAK_FLOPS = 989e12
"""An H100's dense bf16 peak, FLOP/s."""
ASSUMED_MFU = 0.40
"""The share of the peak a job's model work reaches."""
ASSUMED_AGENT_STEPS_PER_S = 1000.0
"""Agent steps a second of one job's emulators (ALE, frame skip 4, the random policy), measured on this
project's 2-core machine with `plan --calibrate`'s env rate: 681-984 with 4 emulators and 878-1,381
with 16 (Alien, Breakout, Pong, Seaquest, RoadRunner); joint26_cpu's collect jobs, dataset writing and
checks included, 316-690 with 4. A cluster job's own cores do at least as well."""
ASSUMED_ANALYSIS_S_PER_INPUT_REP = 2e-4
"""The analysis job's seconds per input job per bootstrap replicate (measured: the smoke study's
analysis, 22 inputs x 200 replicates in 0.8 s, 1.8e-4)."""

ASSUMPTIONS = (f"model work at {ASSUMED_MFU:.0%} of {ASSUMED_PEAK_FLOPS / 1e12:.0f} TFLOP/s (an H100's dense bf16 "
               f"peak; 6 x parameters x tokens to train, 2 x to infer), emulators at "
               f"{ASSUMED_AGENT_STEPS_PER_S:,.0f} agent steps/s a job, episodes at the protocol's cap "
               f"(upper bounds), the analysis at {ASSUMED_ANALYSIS_S_PER_INPUT_REP:g} s per input x bootstrap "
               "replicate")


def flops_seconds(flops: float) -> float:
    """Seconds of `flops` of model work at the assumed utilisation."""
    return flops / (ASSUMED_PEAK_FLOPS * ASSUMED_MFU)


def env_seconds(agent_steps: float) -> float:
    """Seconds of `agent_steps` of one job's emulators at the assumed rate."""
    return agent_steps / ASSUMED_AGENT_STEPS_PER_S
