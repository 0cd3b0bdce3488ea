"""The GPU check script also runs on CPU with --tiny and writes the numbers it promises."""
import importlib.util
import json
from pathlib import Path


def test_gpu_check_tiny_runs_on_cpu_and_writes_its_report(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).parents[1] / "benchmarks" / "gpu_check.py")
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    out = tmp_path / "gpu_check.json"
    assert gc.main(["--tiny", "--steps", "2", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    for m in ("sft", "self_distill"):
        assert r[m]["steps"] == 2 and r[m]["steps_per_s"] > 0 and r[m]["tokens_per_s"] > 0
        assert r[m]["peak_memory_bytes"] > 0 and r[m]["final_loss"] == r[m]["final_loss"]  # not NaN
    assert r["self_distill_over_sft_step_time"] > 0 and r["device"].startswith("cpu")
    assert r["n_parameters"] > 0 and r["seq_len"] > 20  # few-shot prompts, not single questions
    assert r["precision"] == "fp32" and r["sft"]["skipped_steps"] == 0
    assert gc.main(["--tiny", "--steps", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
    assert gc.main(["--tiny", "--precision", "fp16", "--out", str(tmp_path / "y.json")]) == 2  # CUDA only
    assert not (tmp_path / "y.json").exists()
