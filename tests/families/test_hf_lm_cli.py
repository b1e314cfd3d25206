"""The hf-causal-lm family from the command line: `init --family` records it, every command then uses it.

Runs `assistant-forget` in-process (cli.main) on devices of the shipped models/lm-tiny with a few small days,
and `python -m device_sim run --family hf-causal-lm` on a short run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from assistant_forget import cli
from assistant_forget.device.family_record import FAMILY_FILE
from assistant_forget.families.hf_lm.family import shipped_model_dir
from devkit import persona_log, private_texts
from scan import find_texts, snapshot

LM = ["--family", "hf-causal-lm", "--lora-rank", "2", "--epochs", "1"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_log(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return persona_log(days=3, seed=5, mean=4.0)


def test_every_command_on_an_lm_device(tmp_path, capsys, records):
    dev = tmp_path / "phone"
    code, out, err = run(capsys, "init", "--device", dev, *LM)
    assert code == 0, err
    assert "hf-causal-lm" in out and (dev / FAMILY_FILE).is_file()
    assert run(capsys, "import", write_log(tmp_path / "log.jsonl", records), "--device", dev)[0] == 0
    code, out, err = run(capsys, "train", "--device", dev, "--json")
    assert code == 0, err
    trained = json.loads(out)["trained_days"]
    assert len(trained) == 3
    code, out, _ = run(capsys, "status", "--device", dev, "--json")
    st = json.loads(out)
    assert (st["family"], st["base_model"], st["trained_days"]) == ("hf-causal-lm", "shipped", 3)
    day = trained[1]
    before = snapshot(dev)
    code, out, err = run(capsys, "forget", "--device", dev, "--date", day, "--mode", "fast", "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["dry_run"] and plan["mode"] == "fast" and plan["repair_steps"] >= 1
    assert snapshot(dev) == before  # a dry run changes nothing
    gone = private_texts([r["text"] for r in records if r["timestamp"].startswith(day)
                          and not any(o["text"] == r["text"] for o in records if not o["timestamp"].startswith(day))])
    assert find_texts(dev, gone)  # the scan can see them before
    code, out, err = run(capsys, "forget", "--device", dev, "--date", day, "--mode", "fast", "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "approximate"
    assert run(capsys, "maintain", "--device", dev)[0] == 0
    code, out, _ = run(capsys, "status", "--device", dev, "--json")
    assert json.loads(out)["state"] == "exact" and json.loads(out)["trained_days"] == 2
    code, out, err = run(capsys, "export", "--device", dev, "--json")
    assert code == 0, err
    code, out, _ = run(capsys, "history", "--device", dev, "--json")
    assert [r["type"] for r in json.loads(out)] == ["forget", "exact_pass"]
    assert find_texts(dev, gone) == {}


def test_init_refuses_bad_input_and_creates_nothing(tmp_path, capsys):
    dev = tmp_path / "phone"
    for argv, code in ((LM + ["--lora-targets", "q_proj,no_such_layer"], 2), (LM[:2] + ["--lora-rank", "0"], 2),
                       (["--lora-rank", "2"], 2), (LM + ["--base-model", tmp_path / "absent"], 4)):
        got, _, err = run(capsys, "init", "--device", dev, *argv)
        assert got == code and err.startswith("error: "), (argv, got, err)
        assert not dev.exists()


def test_missing_or_tampered_model_dir_is_exit_4_and_changes_nothing(tmp_path, capsys, records):
    base = tmp_path / "my-model"
    shutil.copytree(shipped_model_dir(), base)
    (base / "checksums.json").unlink()  # a checkpoint of one's own: pinned by the device, not by a checksums file
    dev = tmp_path / "phone"
    assert run(capsys, "init", "--device", dev, "--base-model", base, *LM)[0] == 0
    assert run(capsys, "import", write_log(tmp_path / "log.jsonl", records[:6]), "--device", dev)[0] == 0
    assert run(capsys, "train", "--device", dev)[0] == 0
    before = snapshot(dev)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    for argv in (["train"], ["export"], ["maintain"], ["forget", "--date", records[0]["timestamp"][:10]]):
        code, _, err = run(capsys, *argv, "--device", dev)
        assert code == 4 and "config.json" in err, (argv, code, err)
    assert snapshot(dev) == before
    shutil.rmtree(base)
    code, _, err = run(capsys, "train", "--device", dev)
    assert code == 4 and "no such model directory" in err
    assert snapshot(dev) == before
    record = dev / FAMILY_FILE
    record.write_text(record.read_text().replace('"rank": 2', '"rank": 3'))
    code, _, err = run(capsys, "status", "--device", dev)
    assert code == 4 and FAMILY_FILE in err


def test_device_sim_runs_an_lm_device_to_a_report(tmp_path, capsys):
    from device_sim.__main__ import main

    assert main(["run", "--family", "hf-causal-lm", "--days", "3", "--mean", "4", "--device",
                 str(tmp_path / "sim")]) == 0
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "sim-report" / "report.json").read_text())
    assert "forget" in out and rep["forget"]["files_with_forgotten_text_after"] == 0
    assert rep["forget"]["files_with_forgotten_text_before"] > 0 and rep["state"] == "exact"
    assert len(rep["days"]) == 3 and not (tmp_path / "sim-report" / "log.jsonl").exists()
