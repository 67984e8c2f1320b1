"""The `scaleworld` command, run as a user runs it."""

import json
import subprocess
import sys


def sw(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "scaleworld.cli", *args], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_lists_the_command_groups_without_importing_torch():
    out = sw("--help").stdout
    assert all(group in out for group in ("games", "data", "eval"))
    code = "import sys, scaleworld.cli as c; c.build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_bad_game_is_a_one_line_error_listing_valid_names(tmp_path):
    proc = sw("data", "collect", "--game", "Pongg", "--steps", "10", "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown game 'Pongg'" in lines[0] and "UpNDown" in lines[0]
    assert not (tmp_path / "x").exists()


def test_bad_protocol_override_is_a_one_line_error(tmp_path):
    proc = sw("data", "collect", "--game", "Pong", "--steps", "10", "--protocol", "noop=3",
              "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and "KEY one of frame_size" in proc.stderr


def test_collect_info_verify_and_score_end_to_end(tmp_path):
    out = tmp_path / "pong"
    sw("data", "collect", "--game", "Pong", "--steps", "120", "--envs", "2", "--no-progress",
       "--protocol", "noop_max=0", "--protocol", "max_episode_frames=200", "--out", str(out))
    m = json.loads((out / "manifest.json").read_text())
    assert m["protocol"]["noop_max"] == 0 and m["protocol"]["max_episode_frames"] == 200
    assert m["counts"]["episodes"] >= 2
    assert "Pong" in sw("data", "info", str(out)).stdout
    assert sw("data", "verify", str(out)).stdout.startswith("ok:")
    pixels = out / "storage" / "pixels.memmap"
    pixels.write_bytes(pixels.read_bytes()[:-1])
    proc = sw("data", "verify", str(out), check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "pixels.memmap" in proc.stderr
    score = tmp_path / "score.json"
    sw("eval", "score", "--game", "Pong", "--episodes", "2", "--envs", "2", "--protocol",
       "max_episode_frames=200", "--out", str(score))
    assert len(json.loads(score.read_text())["returns"]) == 2


def test_ctrl_c_says_what_each_command_kept_and_how_to_go_on():
    from scaleworld.cli import build_parser
    from scaleworld.cli.args import interrupted_line

    parse = build_parser().parse_args
    line = interrupted_line(parse(["train", "dynamics", "--tokens-data", "t", "--out", "runs/d"]))
    assert line == "interrupted: runs/d keeps its last checkpoint: the same command resumes from it"
    line = interrupted_line(parse(["data", "collect", "--game", "Pong", "--steps", "10", "--out", "ds"]))
    assert line == ("interrupted: ds was not written (nothing half-written is left as it): the same command starts "
                    "over")
    line = interrupted_line(parse(["report", "runs/x", "--json", "r.json"]))
    assert line == "interrupted: r.json is as it was or complete (files are replaced whole)"
    assert interrupted_line(parse(["games"])) == "interrupted: nothing was written"
    assert "same `scaleworld run` resumes the rest" in interrupted_line(parse(["run", "studies/smoke.yaml"]))
