"""The expert's view: the same at PPO training time and at deployment, bit for bit."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from scaleworld.atari.games import get_game
from scaleworld.atari.protocol import Protocol
from scaleworld.errors import ScaleworldError
from scaleworld.experts.checkpoint import load_expert, save_expert
from scaleworld.experts.ppo import SampledPolicy
from scaleworld.experts.tasks import AtariTask
from scaleworld.experts.train_env import MaskedVectorEnv
from scaleworld.experts.view import FrameStack, ViewSpec, frame_channels

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_luma_is_bt601_rounded_half_up():
    colours = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 37],
                            [1, 1, 1], [0, 1, 5]], dtype=torch.uint8)
    expected = [(299 * r + 587 * g + 114 * b + 500) // 1000 for r, g, b in colours.tolist()]
    luma = frame_channels(colours.reshape(1, 1, -1, 3), grayscale=True)  # [1, 1, 1, 8]
    assert luma.flatten().tolist() == expected  # [0, 255, 76, 150, 29, 125, 1, 1]


def test_frame_stack_fills_on_init_and_shifts_frames_in():
    spec = ViewSpec(frame_size=8, grayscale=False, stack=3)
    stack = FrameStack(spec)
    frames = [torch.full((2, 8, 8, 3), v, dtype=torch.uint8) for v in (1, 2, 3, 4)]
    view = stack(frames[0], torch.tensor([True, False]))
    assert view.shape == (2, 9, 8, 8)
    assert view[0].unique().tolist() == [1] and view[1, :6].unique().tolist() == [0]  # row 1: nothing yet
    stack(frames[1], torch.tensor([False, False]))
    view = stack(frames[2], torch.tensor([False, True]))
    assert [int(view[0, 3 * k, 0, 0]) for k in range(3)] == [1, 2, 3]  # oldest first
    assert view[1].unique().tolist() == [3]  # is_init: filled with the first frame of the episode
    with pytest.raises(ScaleworldError, match=r"uint8 \[N, 8, 8, 3\]"):
        stack(torch.zeros(2, 64, 64, 3, dtype=torch.uint8), torch.tensor([True, True]))


def test_view_at_training_time_equals_view_at_deployment(tmp_path):
    task = AtariTask(game="Breakout", protocol=Protocol(max_episode_frames=160, noop_max=6))
    env = MaskedVectorEnv(task, 3, seed=5, emit_pixels=True)
    model = task.make_network(seed=0)
    rollout = env.rollout(120, SampledPolicy(model, torch.Generator().manual_seed(0)),
                          break_when_any_done=False)  # [3, 120]
    env.close()
    assert int(rollout["is_init"].sum()) > 3 and not bool(rollout["next", "acted"].all())  # episodes restarted

    save_expert(tmp_path, module=model.logits_module(), game=task.game, view=task.view_spec, actions=task.actions)
    expert = load_expert(tmp_path)
    mask = torch.tensor(get_game("Breakout").action_mask()).expand(3, -1)
    state = None  # the expert's state lives in the tensordict: carried from each step's "next" to the next step
    for t in range(rollout.shape[1]):
        step = rollout[:, t]
        td = TensorDict({"pixels": step["pixels"], "action_mask": mask, "is_init": step["is_init"]}, batch_size=[3])
        out = expert(td if state is None else td.update(state))
        state = out["next"].select("expert_view")
        assert torch.equal(out["next", "expert_view"], step["view"]), f"views differ at step {t}"
        acted = step["next", "acted"]  # compare logits where the expert actually acts
        with torch.no_grad():
            trained = model.logits_module()(step["view"][acted])
        torch.testing.assert_close(out["logits"][acted][:, list(task.actions)], trained, rtol=1e-5, atol=1e-5)
