"""Tokens that carry the game: the version 2 objective on real Pong frames, the quality record, and
the gate that refuses a tokenizer whose codes miss the game."""

import json
import subprocess
import sys

import pytest
import torch

from scaleworld.atari.protocol import Protocol
from scaleworld.data.dataset import OfflineDataset
from scaleworld.data.sampling import episode_rows, split_episodes
from scaleworld.errors import ScaleworldError
from scaleworld.models.encode import encode_dataset
from scaleworld.models.model_files import TOKENIZER_FILE, load_tokenizer, save_model
from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig
from scaleworld.models.tokenizer_quality import (
    TokenizerQualityError,
    dataset_identity,
    game_quality,
    measure_quality,
)
from scaleworld.training.config import TrainConfig
from scaleworld.training.runs import train_tokenizer

from .conftest import collect

CONFIG = TokenizerConfig()  # the default widths


@pytest.fixture(scope="module")
def pong_frames(tmp_path_factory):
    """2,400 random-policy steps of Pong in episodes of at most 500 steps: several held-out episodes."""
    return collect(tmp_path_factory.mktemp("pong") / "data", game="Pong", steps=2400, seed=3,
                   protocol=Protocol(max_episode_frames=2000, noop_max=8))


@pytest.fixture(scope="module")
def pong_tokenizer(tmp_path_factory, pong_frames):
    out = tmp_path_factory.mktemp("tok") / "pong"
    train = TrainConfig(steps=600, batch_size=32, lr=1e-3, warmup_steps=50, eval_every=300, checkpoint_every=300)
    info = train_tokenizer(data_dirs=[pong_frames], out=out, config=CONFIG, train=train, val_fraction=0.25,
                           progress=False)
    return out, info


def test_a_pong_tokenizer_describes_held_out_frames_at_a_small_cpu_budget(pong_tokenizer, pong_frames):
    out, info = pong_tokenizer
    q = info["quality"]["Pong"]
    assert q["frames_from"] == "held_out" and q["frames"] >= 256
    assert q["residual_fraction"] <= 0.5, q  # more than half of what differs between frames is described
    assert q["perplexity_median"] >= 4, q  # within Pong's own frames, codes are in use
    assert q["psnr_db"] > q["mean_frame_psnr_db"] + 3
    # Trained on sampled codes, encoded with the mode: the two reconstruct the held-out frames alike.
    assert abs(q["sampled_residual_fraction"] - q["residual_fraction"]) < 0.1, q
    # The record is what the saved tokenizer measures on the held-out episodes of the data split.
    tokenizer, identity = load_tokenizer(out)
    assert identity["quality"]["Pong"] == json.loads((out / "run.json").read_text())["quality"]["Pong"] == q
    ds = OfflineDataset.open(pong_frames)
    _, held_out = split_episodes(len(ds.episode_lengths), val_fraction=0.25, seed=0)
    assert game_quality(tokenizer, ds, held_out, frames_from="held_out") == q


def test_at_initialisation_the_training_forward_pass_spreads_frames_over_codes(pong_frames):
    torch.manual_seed(0)
    tokenizer = Tokenizer(CONFIG).train()
    pixels = torch.as_tensor(OfflineDataset.open(pong_frames).data["pixels"][:256:4])  # 64 frames
    codes = tokenizer.sample_onehot(tokenizer.logits(pixels)).argmax(-1)  # [64, 32] classes drawn in training
    per_variable = [len(torch.unique(codes[:, g])) for g in range(codes.shape[1])]
    assert min(per_variable) > 8  # every variable gives the frames many different classes
    assert len(torch.unique(codes, dim=0)) == len(pixels)


def test_a_shared_tokenizer_measures_each_game_on_its_own_frames(tmp_path, pong_ds, breakout_ds):
    train = TrainConfig(steps=6, batch_size=8, warmup_steps=2, eval_every=6, checkpoint_every=6)
    info = train_tokenizer(data_dirs=[pong_ds, breakout_ds], out=tmp_path / "shared",
                           config=TokenizerConfig(channels=(8, 16, 32, 32)), train=train, progress=False)
    assert info["scope"] == "shared" and set(info["quality"]) == {"Pong", "Breakout"}
    tokenizer, _ = load_tokenizer(tmp_path / "shared")
    for path in (pong_ds, breakout_ds):
        ds = OfflineDataset.open(path)
        _, held_out = split_episodes(len(ds.episode_lengths), val_fraction=0.1, seed=0)
        assert info["quality"][ds.game] == game_quality(tokenizer, ds, held_out, frames_from="held_out")

    # Codes that only say which game a frame is from count for nothing within a game.
    class GameOnly(Tokenizer):
        def logits(self, pixels):  # class 1 for Pong's brown background, class 0 for Breakout's black one
            bright = (pixels.float().mean((1, 2, 3)) > 70).long()  # Pong ~98, Breakout ~41
            return torch.nn.functional.one_hot(bright, 32)[:, None, :].expand(-1, 32, -1).float() * 50

    game_only = GameOnly(TokenizerConfig(channels=(8, 16, 32, 32))).eval()
    frames = {p.name: torch.as_tensor(OfflineDataset.open(p).data["pixels"][:200]) for p in (pong_ds, breakout_ds)}
    generator = torch.Generator().manual_seed(0)
    pooled = measure_quality(game_only, torch.cat(list(frames.values())), generator=generator)
    assert pooled["perplexity_median"] == pytest.approx(2.0)  # pooled over games, the code looks informative
    for pixels in frames.values():
        assert measure_quality(game_only, pixels, generator=generator)["perplexity_median"] == pytest.approx(1.0)


def _collapsed(folder, *, quality=None):
    """A tokenizer that gives every frame the same code (what version 1 could end as)."""
    torch.manual_seed(0)
    tokenizer = Tokenizer(TokenizerConfig(channels=(8, 16, 32, 32)))
    with torch.no_grad():
        tokenizer.to_logits.weight.zero_()
        tokenizer.to_logits.bias.zero_()
        tokenizer.to_logits.bias.view(32, 32)[:, 0] = 10.0
    folder.mkdir()
    extra = {"scope": "per_game", "games": ["Pong"], **({"quality": quality} if quality else {})}
    save_model(folder / TOKENIZER_FILE, kind="tokenizer", config=tokenizer.config.to_dict(), module=tokenizer,
               extra=extra)
    return folder


def _sw(*args):
    return subprocess.run([sys.executable, "-m", "scaleworld.cli", *map(str, args)], capture_output=True, text=True)


def test_the_gate_refuses_a_collapsed_tokenizer_with_one_line_and_writes_nothing(tmp_path, pong_ds):
    collapsed = _collapsed(tmp_path / "collapsed")
    out = tmp_path / "tokens" / "pong"
    proc = _sw("tokens", "encode", "--tokenizer", collapsed, "--data", pong_ds, "--out", out, "--no-progress")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {collapsed}: the tokenizer leaves ") and "of Pong's frame variance" in line
    assert "unseen frames; allowed 0.5" in line and "train a tokenizer on this Pong data" in line
    assert not out.parent.exists()  # not even a staging folder

    # A recorded held-out figure is what the gate reads for the dataset it was measured on (here a
    # tokenizer that records 0.93 for this Pong dataset)...
    record = {"Pong": {"residual_fraction": 0.93, "frames": 300, "frames_from": "held_out",
                       "dataset": dataset_identity(OfflineDataset.open(pong_ds))}}
    recorded = _collapsed(tmp_path / "recorded", quality=record)
    with pytest.raises(TokenizerQualityError, match="leaves 0.93 of Pong's frame variance unexplained "
                                                    r"\(residual fraction on 300 held-out frames; allowed 0.5\)"):
        encode_dataset(tokenizer_dir=recorded, data_dir=pong_ds, out=out, progress=False)
    assert not out.exists()
    # Allowing more is explicit, and the token dataset records the figures it passed with.
    manifest = encode_dataset(tokenizer_dir=recorded, data_dir=pong_ds, out=out, max_residual=1.0, progress=False)
    assert manifest["tokenizer"]["quality"] == record["Pong"]
    proc = _sw("tokens", "encode", "--tokenizer", recorded, "--data", pong_ds, "--out", tmp_path / "cli",
               "--max-residual", 1, "--no-progress")
    assert proc.returncode == 0 and "(Pong: residual fraction 0.930 on 300 held-out frames, allowed 1)" in proc.stdout
    # ...and not for other data of the same game, which is measured (all of its frames are unseen).
    other = collect(tmp_path / "other", game="Pong", steps=200, seed=9)
    with pytest.raises(TokenizerQualityError, match=r"on 200 unseen frames; allowed 0.5\), so its tokens miss the "
                                                    "game: train a tokenizer on this Pong data"):
        encode_dataset(tokenizer_dir=recorded, data_dir=other, out=tmp_path / "o", progress=False)
    with pytest.raises(ScaleworldError, match="max_residual=0: the allowed residual fraction must be positive"):
        encode_dataset(tokenizer_dir=recorded, data_dir=pong_ds, out=tmp_path / "z", max_residual=0, progress=False)


def test_a_tokenizer_of_the_first_version_is_refused_with_the_fix(tmp_path):
    tokenizer = Tokenizer(TokenizerConfig(channels=(8, 16, 32, 32)))
    config = {k: v for k, v in tokenizer.config.to_dict().items() if k != "version"}  # as version 1 saved it
    (tmp_path / "old").mkdir()
    save_model(tmp_path / "old" / TOKENIZER_FILE, kind="tokenizer", config=config, module=tokenizer,
               extra={"scope": "per_game", "games": ["Pong"]})
    with pytest.raises(ScaleworldError, match=r"old/tokenizer.pt: a version 1 tokenizer .*train the tokenizer again"):
        load_tokenizer(tmp_path / "old")
    with pytest.raises(ScaleworldError, match="tokenizer channels \\[\\]: give 1 to 6 widths"):
        TokenizerConfig(channels=())


def test_episode_rows_follow_the_episode_table(pong_ds):
    ds = OfflineDataset.open(pong_ds)
    rows = episode_rows(ds.episode_starts, ds.episode_lengths, torch.tensor([1, 0]))
    assert len(rows) == int(ds.episode_lengths[0] + ds.episode_lengths[1])
    assert torch.equal(torch.as_tensor(ds.data["episode"][rows]).unique_consecutive(), torch.tensor([1, 0]))
