import json

from scaleworld.atari.protocol import Protocol
from scaleworld.data.random_policy import RandomPolicy
from scaleworld.evaluation.scores import score_policy, write_score


def test_random_score_plays_exactly_the_requested_episodes_under_the_cap(tmp_path):
    protocol = Protocol(max_episode_frames=400, noop_max=0)
    policy = RandomPolicy(seed=0)
    record = score_policy(game="Pong", policy=policy, policy_identity=policy.identity,
                          episodes=5, protocol=protocol, seed=0, num_envs=2)
    assert len(record["returns"]) == 5
    assert record["lengths"] == [100] * 5  # Pong never ends in 100 steps: all hit the cap
    assert all(-25 <= r <= 0 for r in record["returns"])
    assert record["protocol"] == protocol.to_dict() and record["policy"]["kind"] == "random"
    write_score(record, tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["mean"] == record["mean"]


def test_random_score_is_seeded():
    protocol = Protocol(max_episode_frames=2000)
    runs = [score_policy(game="Breakout", policy=RandomPolicy(seed=s), policy_identity={},
                         episodes=3, protocol=protocol, seed=s, num_envs=3) for s in (4, 4)]
    assert runs[0]["returns"] == runs[1]["returns"] and runs[0]["lengths"] == runs[1]["lengths"]
