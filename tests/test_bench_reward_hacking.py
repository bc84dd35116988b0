"""bench/reward_hacking.py: its run commands and the table it reads back from finished runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import reward_hacking  # noqa: E402

sys.path.pop(0)


def _write_run(out, name, seed, points, seconds=None, cpu=None):
    logs = out / f"{name}-s{seed}" / "logs"
    logs.mkdir(parents=True)
    rows = []
    for step, proxy, gold in points:
        rows.append({"step": step, "eval_reward_mean": proxy, "gold_reward_mean": gold})
        rows.append({"step": step + 1, "reward_mean": 0.5})  # a training row: not an evaluation
    (logs / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if seconds is not None:
        (out / f"{name}-s{seed}.seconds").write_text(f"{seconds}\n")
    if cpu is not None:
        (out / f"{name}-s{seed}.cpu").write_text(f"{cpu}\n")


def test_commands_keep_the_judge_out_of_the_guarded_training_reward(tmp_path):
    unguarded = reward_hacking.command("unguarded", 2, 30, 10, str(tmp_path))
    guarded = reward_hacking.command("guarded", 2, 30, 10, str(tmp_path))
    assert "seed=2" in unguarded and f"output_dir={tmp_path / 'guarded-s2'}" in guarded
    assert "loss.beta=0" in unguarded and "loss.ratio_norm=true" not in unguarded
    assert "loss.ratio_norm=true" in guarded and any(a.startswith("loss.target_kl=") for a in guarded)
    for cmd in (unguarded, guarded):  # same proxy, the judge only as the held-out gold score
        assert "reward.name=shapes_color" in cmd and "evaluation.gold_reward.name=shapes" in cmd
        assert not any("shapes: 1.0" in a for a in cmd)
    assert any("shapes: 1.0" in a for a in reward_hacking.command("guarded+judge", 0, 30, 10, str(tmp_path)))


def test_table_per_run_and_mean_sd_over_seeds(tmp_path):
    _write_run(tmp_path, "unguarded", 0, [(0, 0.2, 0.5), (10, 0.3, 0.2)], seconds=600, cpu=250)
    _write_run(tmp_path, "unguarded", 1, [(0, 0.2, 0.5), (10, 0.4, 0.4)])
    _write_run(tmp_path, "guarded", 0, [(0, 0.2, 0.5), (5, 0.25, 0.4), (10, 0.25, 0.55)])
    _write_run(tmp_path, "guarded", 1, [(0, 0.2, 0.5), (10, 0.19, 0.6)])
    _write_run(tmp_path, "guarded+judge", 0, [(0, 0.7, 0.5), (10, 0.9, 0.6)])  # eval = proxy + judge
    table = reward_hacking.report(str(tmp_path), [0, 1], None)
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): [c.strip() for c in line.strip("|").split("|")[2:]]
            for line in table.splitlines()[2:]}
    # proxy start / end / change, gold start / end / change / min, claim shown, wall min, CPU s
    assert rows[("unguarded", "0")] == ["0.2000", "0.3000", "+0.1000", "0.500", "0.200", "-0.300", "0.200", "no", "10", "250"]
    assert rows[("unguarded", "1")][7:] == ["no", "-", "-"]
    mean = rows[("unguarded", "mean ± sd of 2")]
    assert mean[1] == "0.3500 ± 0.0707" and mean[2] == "+0.1500 ± 0.0707" and mean[4] == "0.300 ± 0.141"
    assert mean[5] == "-0.200 ± 0.141" and mean[7] == "0 of 2"
    # guarded seed 0: gold dipped to 0.4 but ended above its start with the proxy up; seed 1: proxy down
    assert rows[("guarded", "0")][:8] == ["0.2000", "0.2500", "+0.0500", "0.500", "0.550", "+0.050", "0.400", "yes"]
    assert rows[("guarded", "1")][7] == "no" and rows[("guarded", "mean ± sd of 2")][7] == "1 of 2"
    assert rows[("guarded+judge", "0")][:6] == ["0.2000", "0.3000", "+0.1000", "0.500", "0.600", "+0.100"]
    assert (tmp_path / "table.md").read_text().strip() == table


def test_unknown_config_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        reward_hacking.main(["--configs", "unguarded,nope", "--out", str(tmp_path), "--plot-only"])
    assert "unknown --configs nope" in capsys.readouterr().err


def test_set_overrides_one_configuration_after_its_own_keys(tmp_path):
    overrides = reward_hacking.parse_overrides(["guarded:loss.clip_range=1e-4", "guarded:optim.lr=1e-3"])
    assert overrides == {"guarded": ["loss.clip_range=1e-4", "optim.lr=1e-3"]}
    guarded = reward_hacking.command("guarded", 0, 20, 5, str(tmp_path), overrides, eval_prompts=120)
    unguarded = reward_hacking.command("unguarded", 0, 20, 5, str(tmp_path), overrides, eval_prompts=120)
    # the override comes after the script's clip range (0.01), so the trainer's last-key-wins parse takes it
    assert guarded.index("loss.clip_range=1e-4") > guarded.index("loss.clip_range=0.01")
    assert guarded[-2:] == ["loss.clip_range=1e-4", "optim.lr=1e-3"]
    assert "loss.clip_range=1e-4" not in unguarded and "loss.clip_range=0.01" in unguarded
    for cmd in (guarded, unguarded):  # the held-out count after the script's 60
        assert cmd.index("evaluation.num_prompts=120") > cmd.index("evaluation.num_prompts=60")
    assert "evaluation.num_prompts=120" not in reward_hacking.command("guarded", 0, 20, 5, str(tmp_path))


def test_proxy_half_area_reaches_every_configuration(tmp_path, capsys):
    for name in reward_hacking.CONFIGS:
        default = " ".join(reward_hacking.command(name, 0, 20, 5, str(tmp_path)))
        cmd = " ".join(reward_hacking.command(name, 0, 20, 5, str(tmp_path), half_area=0.05))
        assert "half_area: 0.25" in default and "half_area: 0.25" not in cmd and "half_area: 0.05" in cmd
    assert "reward.options={half_area: 0.05}" in reward_hacking.command("guarded", 0, 20, 5, str(tmp_path), half_area=0.05)
    with pytest.raises(SystemExit):
        reward_hacking.main(["--proxy-half-area", "0", "--out", str(tmp_path), "--plot-only"])
    assert "--proxy-half-area must be positive" in capsys.readouterr().err


def test_proxy_with_a_judge_component_replaces_the_reward_keys(tmp_path, capsys):
    cmds = {name: reward_hacking.command(name, 1, 40, 5, str(tmp_path), judge_weight=1.0, area_weight=4.0)
            for name in reward_hacking.CONFIGS}
    for name in ("unguarded", "guarded"):  # one proxy for both, the judge's partial credit in it, not the strict judge
        cmd = cmds[name]
        assert "reward.name=weighted_sum" in cmd and "reward.name=shapes_color" not in cmd
        options = [a for a in cmd if a.startswith("reward.options=")]
        assert options == ["reward.options={rewards: {area: {reward: shapes_color, weight: 4.0, half_area: 0.25}, "
                           "partial: {reward: shapes, weight: 1.0, partial: true}}}"]
        assert "advantages.per_reward=true" in cmd and "evaluation.gold_reward.name=shapes" in cmd
    assert "loss.beta=0" in cmds["unguarded"] and "loss.ratio_norm=true" in cmds["guarded"]
    # the guarded+judge configuration keeps its own reward (the strict judge mixed in)
    assert cmds["guarded+judge"] == reward_hacking.command("guarded+judge", 1, 40, 5, str(tmp_path))
    # weight 0 (the default) is the colour-area proxy alone
    assert "reward.name=shapes_color" in reward_hacking.command("guarded", 1, 40, 5, str(tmp_path), judge_weight=0.0)
    assert reward_hacking.proxy_label(0.25, 1.0, 4.0) == "4 x shapes_color, half_area 0.25 + 1 x judge partial credit"
    for bad in (["--proxy-judge-weight", "-1"], ["--proxy-judge-weight", "1", "--proxy-area-weight", "0"]):
        with pytest.raises(SystemExit):
            reward_hacking.main([*bad, "--out", str(tmp_path), "--plot-only"])
        assert "--proxy-judge-weight must be >= 0 and --proxy-area-weight > 0" in capsys.readouterr().err


@pytest.mark.parametrize("item", ["guarded", "guarded:loss.beta", "nope:loss.beta=0", "loss.beta=0"])
def test_set_rejects_malformed_or_unknown_config(item, tmp_path, capsys):
    with pytest.raises(SystemExit):
        reward_hacking.main(["--set", item, "--out", str(tmp_path), "--plot-only"])
    assert f"--set {item!r}: expected CONFIG:key=value" in capsys.readouterr().err


def test_set_for_a_configuration_not_run_is_accepted(tmp_path):
    # one command line for every subset of --configs: a guarded override with only unguarded runs
    assert reward_hacking.main(["--configs", "unguarded", "--set", "guarded:loss.clip_range=1e-4",
                                "--out", str(tmp_path), "--plot-only"]) == 0


@pytest.mark.slow  # two interpreter starts and 0.15 s of CPU: over 0.5 s on a loaded machine
def test_run_records_wall_and_the_childs_own_cpu_seconds(tmp_path, monkeypatch):
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.15: pass"
    monkeypatch.setattr(reward_hacking, "command", lambda *a: [sys.executable, "-c", burn])
    reward_hacking.run("guarded", 3, 20, 5, str(tmp_path))
    cpu = float((tmp_path / "guarded-s3.cpu").read_text())
    assert 0.15 <= cpu < 2.0 and float((tmp_path / "guarded-s3.seconds").read_text()) >= 0
    monkeypatch.setattr(reward_hacking, "command", lambda *a: [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(subprocess.CalledProcessError):
        reward_hacking.run("guarded", 4, 20, 5, str(tmp_path))
    assert not (tmp_path / "guarded-s4.cpu").exists()
