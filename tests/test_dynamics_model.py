"""The dynamics transformer: KV cache, parameter counts, losses' key handling, two-hot."""

import pytest
import torch
from tensordict import TensorDict

from scaleworld.errors import ScaleworldError
from scaleworld.models.dynamics import DynamicsModel
from scaleworld.models.dynamics_config import DynamicsConfig, parameter_counts
from scaleworld.models.ladders import get_ladder, get_size, ladder_table
from scaleworld.models.twohot import expected_value, two_hot
from scaleworld.objectives.world_model import DynamicsLoss


def _sequence(b, t, games=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randint(0, 32, (b, t, 32), generator=g)
    actions = torch.randint(0, 18, (b, t), generator=g)
    game = torch.randint(0, games, (b, t), generator=g) if games else None
    return latents, actions, game


@pytest.mark.parametrize("games", [(), ("Pong", "Breakout")])
def test_kv_cache_stepping_equals_the_full_forward_even_after_the_window_slides(games):
    torch.manual_seed(0)
    config = DynamicsConfig(width=64, depth=3, heads=4, context=8, games=games)
    model = DynamicsModel(config).eval()
    latents, actions, game = _sequence(3, 21, len(games))  # 21 > 8: the cache evicts 13 times
    with torch.no_grad():
        full = model(latents, actions, game)
        cache = model.new_cache(3)
        steps = [model.step(cache, latents[:, t], actions[:, t], None if game is None else game[:, t])
                 for t in range(21)]
    for key in ("hidden", "latent_logits", "reward_logits", "termination_logits"):
        stepped = torch.cat([s[key] for s in steps], dim=1)
        torch.testing.assert_close(stepped, full[key], rtol=1e-5, atol=1e-5)
    # within the window the sliding mask is plain causal: a prefix's outputs do not change
    with torch.no_grad():
        prefix = model(latents[:, :8], actions[:, :8], None if game is None else game[:, :8])
    torch.testing.assert_close(prefix["latent_logits"], full["latent_logits"][:, :8], rtol=1e-5, atol=1e-5)


def test_prefill_equals_stepping_and_one_row_can_restart_while_the_others_go_on():
    torch.manual_seed(0)
    model = DynamicsModel(DynamicsConfig(width=64, depth=2, heads=4, context=6)).eval()
    latents, actions, _ = _sequence(3, 15)
    with torch.no_grad():
        full = model(latents, actions)
        cache = model.new_cache(3)
        first = model.prefill(cache, torch.arange(3), latents[:, :4], actions[:, :4])
        torch.testing.assert_close(first["hidden"], full["hidden"][:, 3:4], rtol=1e-5, atol=1e-5)
        for t in range(4, 9):
            out = model.step(cache, latents[:, t], actions[:, t])
            torch.testing.assert_close(out["latent_logits"], full["latent_logits"][:, t : t + 1], rtol=1e-5, atol=1e-5)
        # row 1 starts a new episode from its own 3-token history; rows 0 and 2 go on untouched
        fresh_latents, fresh_actions, _ = _sequence(1, 9, seed=7)
        model.prefill(cache, torch.tensor([1]), fresh_latents[:, :3], fresh_actions[:, :3])
        fresh = model(fresh_latents, fresh_actions)
        for t in range(9, 15):  # the others slide past the window meanwhile
            j = t - 9 + 3
            step_latents, step_actions = latents[:, t].clone(), actions[:, t].clone()
            step_latents[1], step_actions[1] = fresh_latents[0, j], fresh_actions[0, j]
            out = model.step(cache, step_latents, step_actions)
            for row in (0, 2):
                torch.testing.assert_close(out["hidden"][row], full["hidden"][row, t : t + 1], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out["hidden"][1], fresh["hidden"][0, j : j + 1], rtol=1e-5, atol=1e-5)
        # an empty history: the row's next token sees nothing before it
        model.prefill(cache, torch.tensor([2]), latents[2:, :0], actions[2:, :0])
        out = model.step(cache, latents[:, 0], actions[:, 0])
        torch.testing.assert_close(out["hidden"][2], full["hidden"][2, 0:1], rtol=1e-5, atol=1e-5)


def test_a_padded_prefill_equals_a_prefill_of_the_real_tokens_alone():
    # Rows with histories of 4, 2, 1 and 0 real tokens, left-padded to 4 with junk; every later step
    # must equal the model run on the real tokens only (a row with none: run from its next token).
    torch.manual_seed(0)
    model = DynamicsModel(DynamicsConfig(width=64, depth=2, heads=4, context=6)).eval()
    latents, actions, _ = _sequence(4, 9)
    lengths = torch.tensor([4, 2, 1, 0])
    padded_latents, padded_actions = latents[:, :4].clone(), actions[:, :4].clone()
    for row, n in enumerate(lengths.tolist()):  # junk where the padding goes: it must not matter
        padded_latents[row, : 4 - n] = 31 - padded_latents[row, : 4 - n]
        padded_actions[row, : 4 - n] = 17 - padded_actions[row, : 4 - n]
    with torch.no_grad():
        cache = model.new_cache(4)
        heads = model.prefill(cache, torch.arange(4), padded_latents, padded_actions, lengths=lengths)
        stepped = [model.step(cache, latents[:, t], actions[:, t])["hidden"] for t in range(4, 9)]
        for row, n in enumerate(lengths.tolist()):
            alone = model(latents[row : row + 1, 4 - n : 9], actions[row : row + 1, 4 - n : 9])["hidden"][0]
            if n:
                torch.testing.assert_close(heads["hidden"][row, 0], alone[n - 1], rtol=1e-5, atol=1e-5)
            for t in range(5):
                torch.testing.assert_close(stepped[t][row, 0], alone[n + t], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(heads["hidden"]).all()  # padding attends to itself: no 0/0 anywhere


def test_the_window_really_forgets_tokens_older_than_the_context():
    torch.manual_seed(0)
    model = DynamicsModel(DynamicsConfig(width=32, depth=1, heads=2, context=4)).eval()
    latents, actions, _ = _sequence(1, 10)
    changed = latents.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 32  # differs only at t=0
    with torch.no_grad():
        a, b = model(latents, actions)["latent_logits"], model(changed, actions)["latent_logits"]
    assert not torch.allclose(a[:, 3], b[:, 3])  # t=3 still sees t=0
    torch.testing.assert_close(a[:, 4:], b[:, 4:])  # one layer, window 4: t>=4 cannot see t=0


def counts_of(model):
    return {"total": sum(p.numel() for p in model.parameters()),
            "blocks": sum(p.numel() for p in model.blocks.parameters())}


def test_parameter_counts_follow_the_transformer_formula_and_the_paper_ladder():
    for size in get_ladder("paper"):
        w, d = size.width, size.depth
        counts = parameter_counts(size.config())
        assert counts["blocks"] == d * (12 * w * w + 13 * w)  # qkv, proj, 2-layer MLP, 2 LayerNorms
        assert counts["total"] > counts["blocks"]
    for config in (get_size("paper-d4").config(games=("Pong", "Breakout")), DynamicsConfig(width=64, depth=3, heads=4)):
        with torch.device("meta"):  # the formula against the module's own count
            model = DynamicsModel(config)
        assert counts_of(model) == parameter_counts(config)
    rows = {r["name"]: r for r in ladder_table("paper")}
    assert [r["depth"] for r in rows.values()] == [2, 4, 8, 12, 24, 48, 96]
    assert 6.0e6 < rows["paper-d2"]["block_params"] < 6.5e6  # the paper's "about 6M"
    assert 2.9e8 < rows["paper-d96"]["block_params"] < 3.1e8  # and "about 300M"
    with pytest.raises(ScaleworldError, match="unknown ladder 'nope'"):
        get_ladder("nope")
    with pytest.raises(ScaleworldError, match="valid sizes are paper-d2"):
        get_size("paper-d3")


def test_two_hot_encodes_and_decodes_rewards():
    x = torch.tensor([0.0, 1.0, -1.0, 7.0, 300.0, -21.0])
    target = two_hot(x, 255, 20.0)
    assert torch.allclose(target.sum(-1), torch.ones(6))
    assert (target > 0).sum(-1).max() <= 2
    torch.testing.assert_close(expected_value(target.clamp_min(1e-12).log(), 20.0), x, rtol=1e-4, atol=1e-4)


def _batch(b=2, t=8):
    latents, actions, _ = _sequence(b, t)
    return TensorDict({
        "tokens": latents.to(torch.uint8), "action": actions,
        "next": {"reward": torch.zeros(b, t), "terminated": torch.zeros(b, t, dtype=torch.bool)},
        "mask": torch.ones(b, t, dtype=torch.bool)}, batch_size=[b, t])


def test_world_model_loss_terms_and_torchrl_key_handling():
    torch.manual_seed(0)
    loss = DynamicsLoss(DynamicsModel(DynamicsConfig(width=32, depth=1, heads=2, context=8)))
    out = loss(_batch())
    assert set(out.keys()) == {"loss_latent", "loss_reward", "loss_termination", "total"}
    # an untrained model is close to uniform: 32 variables x ln(32) nats per frame
    assert abs(out["loss_latent"].item() - 32 * torch.log(torch.tensor(32.0)).item()) < 2.0
    torch.testing.assert_close(out["total"], out["loss_latent"] + out["loss_reward"] + out["loss_termination"])
    loss.set_keys(tokens="z", reward=("next", "r"))
    assert "z" in loss.in_keys and ("next", "r") in loss.in_keys
    batch = _batch()
    batch["z"] = batch.pop("tokens")
    batch["next", "r"] = batch["next"].pop("reward")
    torch.testing.assert_close(loss(batch)["loss_latent"], out["loss_latent"])
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(pixels="x")
    with pytest.raises(KeyError):
        loss(_batch())  # the default key is no longer read


def test_masked_positions_do_not_count():
    torch.manual_seed(0)
    loss = DynamicsLoss(DynamicsModel(DynamicsConfig(width=32, depth=1, heads=2, context=8)))
    batch = _batch()
    batch["mask"][:, 5:] = False
    garbage = batch.clone()
    garbage["tokens"][:, 6:] = 0  # after the mask: must not change anything that counts
    garbage["next", "reward"][:, 5:] = 99.0
    torch.testing.assert_close(loss(batch)["total"], loss(garbage)["total"])


def test_a_step_reads_its_position_from_the_device_scalar_only():
    """What makes a CUDA graph of `step` right at every position: the Python int is not used inside it."""
    torch.manual_seed(0)
    model = DynamicsModel(DynamicsConfig(width=32, depth=2, heads=2, context=4)).eval()
    latents, actions, _ = _sequence(2, 9)
    with torch.no_grad():
        full = model(latents, actions)
        cache = model.new_cache(2)
        model.prefill(cache, torch.arange(2), latents[:, :3], actions[:, :3])
        assert cache.position == int(cache.pos) == 3
        for t in range(3, 9):  # past the window: slots wrap around
            cache.position = -1000  # garbage: a graph replay leaves the Python int behind too
            out = model.step(cache, latents[:, t], actions[:, t])
            torch.testing.assert_close(out["hidden"], full["hidden"][:, t : t + 1], rtol=1e-5, atol=1e-5)
            assert int(cache.pos) == t + 1
        cache.reset()
        assert cache.position == int(cache.pos) == 0


def test_a_prefill_reads_its_positions_from_the_device_scalar_only():
    """What makes a CUDA graph of a restart right at every position: prefill's positions, slots and
    `start` come from `cache.pos`; the Python int only serves the fresh-cache check."""
    torch.manual_seed(0)
    model = DynamicsModel(DynamicsConfig(width=32, depth=2, heads=2, context=4)).eval()
    latents, actions, _ = _sequence(2, 9)
    caches, heads = [], []
    with torch.no_grad():
        for garbage in (False, True):
            cache = model.new_cache(2)
            model.prefill(cache, torch.arange(2), latents[:, :3], actions[:, :3])
            for t in range(3, 6):
                model.step(cache, latents[:, t], actions[:, t])
            if garbage:
                cache.position = 1000  # left behind, as after graph replays (>= T: passes the fresh-cache check)
            # row 1 restarts from 3 tokens; padding repeats it (the same history written twice)
            heads.append(model.prefill(cache, torch.tensor([1, 1]), latents[1:, 6:9].expand(2, -1, -1),
                                       actions[1:, 6:9].expand(2, -1)))
            caches.append(cache)
    assert caches[1].start.tolist() == caches[0].start.tolist() == [0, 3]
    for a, b in ((caches[0].k, caches[1].k), (caches[0].v, caches[1].v), (heads[0]["hidden"], heads[1]["hidden"])):
        assert torch.equal(a, b)


def test_the_multi_hot_embedding_equals_the_lookup_sum_forward_and_gradients():
    """latent_embedding(by_matmul=True) (CUDA's path: no atomic adds in its backward) computes the
    lookup's sum: forward and the table's gradient, also under vmap (packed runs)."""
    from scaleworld.models.dynamics import latent_embedding

    gen = torch.Generator().manual_seed(0)
    groups, classes, width = 32, 32, 48
    codes = torch.randint(0, classes, (3, 5, groups), generator=gen) + torch.arange(groups) * classes
    weight = torch.randn(groups * classes, width, generator=gen)
    upstream = torch.randn(3, 5, width, generator=gen)
    results = []
    for by_matmul in (False, True):
        w = weight.clone().requires_grad_(True)
        out = latent_embedding(codes, w, by_matmul=by_matmul)
        (out * upstream).sum().backward()
        results.append((out.detach(), w.grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-6, atol=1e-6)
    assert results[0][1].abs().sum() > 0  # the gradient is not trivially zero
    stacked = torch.stack([weight, 2 * weight])  # [K=2, rows, width]
    packed = torch.vmap(lambda w, c: latent_embedding(c, w, by_matmul=True))(stacked, torch.stack([codes, codes]))
    torch.testing.assert_close(packed[1], 2 * results[0][0], rtol=1e-5, atol=1e-5)


def test_a_model_embeds_the_same_through_either_path():
    """The model's embed on the multi-hot path equals its lookup path (what CUDA and CPU runs use)."""
    from scaleworld.models.dynamics import latent_embedding

    torch.manual_seed(0)
    model = DynamicsModel(DynamicsConfig(width=32, depth=1, heads=4, context=8))
    latents = torch.randint(0, 32, (2, 8, 32))
    codes = latents + model._group_offset
    lookup = latent_embedding(codes, model.latent_embed.weight, by_matmul=False)
    torch.testing.assert_close(latent_embedding(codes, model.latent_embed.weight, by_matmul=True), lookup)
    expected = lookup + model.action_embed(torch.zeros(2, 8, dtype=torch.long))
    torch.testing.assert_close(model.embed(latents, torch.zeros(2, 8, dtype=torch.long), None), expected)
