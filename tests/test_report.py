"""Reports from a small fake results tree: collected rows, table values, best markers, figures, index.md."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.core.errors import BenchError, InputError
from bench.report import collect, problem_runs, write_report
from bench.report.feature_plots import tsne_grid
from bench.report.labels import method_labels, method_markers, method_palette
from bench.report.plots import ae_distribution, robust_vs_clean

CLASSES = ["t-shirt", "trouser", "pullover", "dress"]
COUNTS = [600, 190, 60, 20]
GROUP100 = "fashion-mnist_cnn-small_ur100"

# per-class accuracies (fractions) per (method, seed, ur): clean, pgd20; fgsm only at UR 100
PER_CLASS = {
    ("pgd-at", 0, 100): {"clean": [0.9, 0.8, 0.7, 0.5], "pgd20": [0.6, 0.4, 0.4, 0.2]},
    ("pgd-at", 1, 100): {"clean": [0.9, 0.8, 0.7, 0.6], "pgd20": [0.62, 0.42, 0.42, 0.22]},
    ("rbl", 0, 100): {"clean": [0.85, 0.75, 0.65, 0.55], "pgd20": [0.6, 0.45, 0.45, 0.3]},
    ("rbl", 1, 100): {"clean": [0.85, 0.75, 0.65, 0.55], "pgd20": [0.6, 0.46, 0.46, 0.32]},
    ("pgd-at", 0, 10): {"clean": [0.9, 0.85, 0.8, 0.75], "pgd20": [0.5, 0.5, 0.45, 0.35]},
    ("rbl", 0, 10): {"clean": [0.88, 0.84, 0.8, 0.76], "pgd20": [0.5, 0.5, 0.46, 0.4]},
}
# AE predicted-label counts per epoch
AE_HIST = {"pgd-at": [[50, 30, 15, 5], [45, 30, 17, 8]], "rbl": [[30, 28, 24, 18], [27, 26, 25, 22]]}


def run_id(method: str, seed: int, ur: float = 100) -> str:
    return f"fashion-mnist-ur{ur:g}-cnn-small-{method}-quick-s{seed}-0123456789"


def config(method: str, seed: int, ur: float = 100, **params: object) -> dict:
    return {
        "dataset": "fashion-mnist", "ur": float(ur), "arch": "cnn-small", "method": method,
        "method_params": params, "preset": "quick", "epochs": 2, "batch_size": 128, "lr": 0.1,
        "momentum": 0.9, "weight_decay": 5e-4, "milestones": [1, 2], "lr_gamma": 0.1, "eps": 0.1,
        "step_size": 0.025, "steps": 5, "augment": "none", "seed": seed, "epoch_eval_n": 500,
        "eval_suite": "fast", "eval_n": 1000,
    }


def attack(per_class: list[float]) -> dict:
    """An eval.json attack entry whose summaries follow from the per-class accuracies (C = 4)."""
    return {
        "acc": sum(per_class) / 4, "per_class_acc": per_class,
        "per_class_correct": [round(a * 100) for a in per_class], "per_class_total": [100] * 4,
        "head": per_class[0], "mid": (per_class[1] + per_class[2]) / 2, "tail": per_class[3],
        "worst": min(per_class), "balanced": sum(per_class) / 4, "seconds": 1.0, "params": {},
    }


def write_run(root: Path, method: str, seed: int, ur: float = 100, *, done: bool = True,
              eval_text: str | None = None, epochs: int = 2) -> Path:
    folder = root / run_id(method, seed, ur)
    folder.mkdir(parents=True)
    meta = {"run_id": folder.name, "config": config(method, seed, ur), "classes": CLASSES,
            "class_counts": COUNTS}
    (folder / "config.json").write_text(json.dumps(meta))
    if ur == 100:
        lines = [{"epoch": e + 1, "loss": 1.0, "train_clean_acc": 0.5, "train_adv_acc": 0.3,
                  "ae_pred_hist": AE_HIST.get(method, AE_HIST["rbl"])[e], "ae_pred_entropy": 1.2,
                  "test_clean_acc": 0.5 + 0.1 * e, "test_pgd20_acc": 0.3 + 0.05 * e, "lr": 0.1,
                  "seconds": 2.0}
                 for e in range(epochs)]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if eval_text is None and (method, seed, ur) in PER_CLASS:
        accs = PER_CLASS[(method, seed, ur)]
        attacks = {name: attack(values) for name, values in accs.items()}
        if ur == 100:
            attacks["fgsm"] = attack([a + 0.05 for a in accs["pgd20"]])
        record = {"run_id": folder.name, "config": meta["config"], "checkpoint": "last", "n_test": 400,
                  "subset": "all", "versions": {}, "device": "cpu", "attacks": attacks}
        eval_text = json.dumps(record)
    if eval_text is not None:
        (folder / "eval.json").write_text(eval_text)
    if done:
        (folder / "done").touch()
    return folder


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for method, seed, ur in PER_CLASS:
        write_run(root, method, seed, ur)
    best = root / run_id("pgd-at", 0)
    record = json.loads((best / "eval.json").read_text())
    record["attacks"] = {"clean": attack([0.9] * 4), "pgd20": attack([0.5] * 4)}
    (best / "eval-best.json").write_text(json.dumps(record))
    write_run(root, "rbl", 2, done=False, epochs=1)
    (write_run(root, "trades", 0, done=False) / "failed").write_text(
        "Traceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory\n")
    write_run(root, "pgd-at", 3, eval_text="{not json")
    return root


@pytest.fixture(scope="module")
def report(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(tree, tmp_path_factory.mktemp("reports") / "demo")


def markdown_rows(path: Path) -> dict[str, dict[str, str]]:
    """Method -> {column header -> cell} of a pipe table."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_collect_one_row_per_run_and_attack(tree: Path) -> None:
    df = collect(tree)
    assert len(df) == 4 * 3 + 2 * 2
    assert set(df["method_label"]) == {"pgd-at", "rbl"}
    row = df[(df["run_id"] == run_id("rbl", 1)) & (df["attack"] == "pgd20")].iloc[0]
    assert row["acc"] == pytest.approx(0.46)
    assert row["tail"] == pytest.approx(0.32)
    assert row["per_class_acc"] == [0.6, 0.46, 0.46, 0.32]
    assert (row["dataset"], row["arch"], row["ur"], row["seed"]) == ("fashion-mnist", "cnn-small", 100.0, 1)


def test_problem_runs_have_reasons(tree: Path) -> None:
    problems = {p.run_id: p for p in problem_runs(tree)}
    assert set(problems) == {run_id("rbl", 2), run_id("trades", 0), run_id("pgd-at", 3)}
    assert problems[run_id("rbl", 2)].status == "partial"
    assert "1 of 2 epochs" in problems[run_id("rbl", 2)].reason
    assert (problems[run_id("trades", 0)].status, problems[run_id("trades", 0)].reason) == (
        "failed", "RuntimeError: CUDA out of memory")
    assert problems[run_id("pgd-at", 3)].status == "unreadable"
    assert problems[run_id("pgd-at", 3)].reason.startswith(f"unreadable {tree / run_id('pgd-at', 3) / 'eval.json'} (")


def test_best_checkpoint_reads_eval_best(tree: Path) -> None:
    df = collect(tree, checkpoint="best")
    assert set(df["run_id"]) == {run_id("pgd-at", 0)}
    assert df.set_index("attack").loc["pgd20", "acc"] == pytest.approx(0.5)
    reasons = {p.run_id: p.reason for p in problem_runs(tree, checkpoint="best")}
    assert reasons[run_id("rbl", 0)].startswith(f"{tree / run_id('rbl', 0) / 'eval-best.json'} not found")
    with pytest.raises(InputError, match="checkpoint"):
        collect(tree, checkpoint="first")


def test_markdown_table_mean_std_and_best(report: Path) -> None:
    rows = markdown_rows(report.parent / "tables" / f"accuracy_{GROUP100}.md")
    assert list(rows) == ["pgd-at", "rbl"]
    assert list(rows["rbl"]) == ["Method", "Seeds", "Clean", "Clean tail", "FGSM", "FGSM tail", "PGD-20",
                                 "PGD-20 tail"]
    pgd, rbl = rows["pgd-at"], rows["rbl"]
    assert pgd["Seeds"] == rbl["Seeds"] == "2"
    # PGD-20: pgd-at 40 and 42 -> 41 ± sqrt(2); rbl 45 and 46 -> 45.5 ± sqrt(0.5)
    assert pgd["PGD-20"] == "41.00 ± 1.41"
    assert rbl["PGD-20"] == "**45.50 ± 0.71**"
    assert (pgd["PGD-20 tail"], rbl["PGD-20 tail"]) == ("21.00 ± 1.41", "**31.00 ± 1.41**")
    # clean: pgd-at 72.5 and 75 -> 73.75 ± 1.77 is best; rbl 70 twice
    assert (pgd["Clean"], rbl["Clean"]) == ("**73.75 ± 1.77**", "70.00 ± 0.00")
    assert (pgd["Clean tail"], rbl["Clean tail"]) == ("**55.00 ± 7.07**", "**55.00 ± 0.00**")  # a tie
    single = markdown_rows(report.parent / "tables" / "accuracy_fashion-mnist_cnn-small_ur10.md")
    assert single["rbl"]["Seeds"] == "1"
    assert single["rbl"]["PGD-20"] == "**46.50**"  # one seed: no std


def test_csv_and_latex_tables(report: Path) -> None:
    csv = pd.read_csv(report.parent / "tables" / f"accuracy_{GROUP100}.csv").set_index("method")
    assert csv.loc["pgd-at", "pgd20_mean"] == pytest.approx(41.0)
    assert csv.loc["pgd-at", "pgd20_std"] == pytest.approx(2**0.5, abs=1e-4)
    assert csv.loc["rbl", "pgd20_tail_mean"] == pytest.approx(31.0)
    assert csv.loc["rbl", "n_seeds"] == 2
    assert csv.loc["rbl", "best"].split(";") == ["clean_tail", "fgsm", "fgsm_tail", "pgd20", "pgd20_tail"]
    assert csv.loc["pgd-at", "best"] == "clean;clean_tail"  # clean tail: a tie at 55
    tex = (report.parent / "tables" / f"accuracy_{GROUP100}.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex
    assert "rbl & 2 & 70.00 $\\pm$ 0.00 & " in tex
    assert "\\textbf{45.50 $\\pm$ 0.71}" in tex
    runs = pd.read_csv(report.parent / "tables" / "runs.csv")
    assert runs[(runs["run_id"] == run_id("pgd-at", 1)) & (runs["attack"] == "pgd20")]["acc"].item() == 42.0


def test_index_links_every_output_file(report: Path) -> None:
    text = report.read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links and all((report.parent / link).is_file() for link in links)
    written = {p.relative_to(report.parent).as_posix() for p in report.parent.rglob("*") if p.is_file()}
    assert written - {"index.md"} == set(links)
    names = {Path(link).name for link in links}
    for stem in (f"per-class-pgd20_{GROUP100}", f"head-mid-tail_{GROUP100}", f"ae-pred-dist_{GROUP100}_s0",
                 f"curves_{GROUP100}", "robust-vs-clean_fashion-mnist_cnn-small",
                 "acc-vs-ur_fashion-mnist_cnn-small"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        assert (report.parent / "figures" / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert (report.parent / "figures" / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
    assert "AE predicted-label distribution, fashion-mnist · cnn-small · UR 10:" in text  # skipped, said so
    assert "ae-pred-dist_fashion-mnist_cnn-small_ur10_" not in text
    assert "no run has analysis.json; run `bench analyze RESULTS_DIR`" in text and "## Feature space" not in text
    assert not list(report.parent.rglob("*.tmp"))


def test_training_ae_table_averages_the_attacked_epochs_over_seeds(report: Path) -> None:
    """UR 100 runs log ae_pred_entropy 1.2 in every epoch and train AE accuracy 0.3 in the last one."""
    rows = markdown_rows(report.parent / "tables" / f"training-aes_{GROUP100}.md")
    assert rows["pgd-at"]["Seeds"] == "2" and rows["pgd-at"]["AE label entropy (nats)"] == "1.200 ± 0.000"
    assert rows["pgd-at"]["Train AE acc., last epoch (%)"] == "30.00 ± 0.00"
    assert "## Training adversarial examples" in report.read_text()


def test_index_lists_runs_used_and_problems(report: Path) -> None:
    text = report.read_text()
    used, problems = text.split("## Runs used")[1].split("## Unfinished or failed runs")
    for method, seed, ur in PER_CLASS:
        assert f"| `{run_id(method, seed, ur)}` | {method} | fashion-mnist | cnn-small | {ur} | {seed} |" \
            in used
    unfinished = "no `done` marker (1 of 2 epochs in metrics.jsonl)"
    assert f"| `{run_id('rbl', 2)}` | partial | {unfinished} |" in problems
    assert f"| `{run_id('trades', 0)}` | failed | RuntimeError: CUDA out of memory |" in problems
    assert f"| `{run_id('pgd-at', 3)}` | unreadable | unreadable " in problems
    assert run_id("pgd-at", 3) not in used


def test_no_finished_runs_is_an_error(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "report"
    write_run(results, "rbl", 0, done=False)
    (write_run(results, "trades", 0, done=False) / "failed").write_text("boom")
    message = r"no finished runs under .*results; run `bench run` or `bench grid` first"
    with pytest.raises(BenchError, match=message):
        write_report(results, out)
    assert not out.exists()
    assert [p.status for p in problem_runs(results)] == ["partial", "failed"]
    with pytest.raises(InputError, match="does not exist"):
        collect(tmp_path / "nowhere")


def test_runs_in_subfolders_are_found_and_done_beats_failed(tmp_path: Path) -> None:
    write_run(tmp_path / "grid-a", "rbl", 0)
    (write_run(tmp_path / "grid-b", "pgd-at", 0) / "failed").write_text("killed, then resumed")
    df = collect(tmp_path)
    assert sorted(set(df["run_id"])) == [run_id("pgd-at", 0), run_id("rbl", 0)]
    assert problem_runs(tmp_path) == []


def test_method_labels_show_what_differs() -> None:
    configs = {
        "a": config("reat", 0, variant="official"), "b": config("reat", 0, variant="paper"),
        "c": config("pgd-at", 0), "d": config("pgd-at", 1),
        "e": {**config("trades", 0), "epochs": 80}, "f": config("trades", 0),
        "g": {**config("rbl", 0), "eps": 0.03}, "h": {**config("rbl", 0, 10), "eps": 0.05},
        "i": config("robal", 0, tau=1.0), "j": {**config("robal", 0, tau=2.0), "dataset": "cifar10"},
        "k": config("tail", 0, 10, mode="a"), "l": config("tail", 0, 100, mode="b"),
    }
    assert method_labels(configs) == {
        "a": "reat (variant=official)", "b": "reat (variant=paper)", "c": "pgd-at", "d": "pgd-at",
        "e": "trades (epochs=80)", "f": "trades (epochs=2)", "g": "rbl", "h": "rbl",
        "i": "robal", "j": "robal", "k": "tail (mode=a)", "l": "tail (mode=b)",
    }


def test_a_field_added_later_reads_as_its_default_in_older_runs(tmp_path: Path) -> None:
    """A run from before ``cuda_graph`` / ``attack_bn`` existed ran with their defaults: same label and row as a
    newer run that records the defaults; a non-default value still tells its runs apart."""
    root = tmp_path / "results"
    older, newer = write_run(root, "pgd-at", 0), write_run(root, "pgd-at", 1)
    changed = write_run(root, "rbl", 0)
    write_run(root, "rbl", 1)
    for folder, extra in ((newer, {"cuda_graph": False, "attack_bn": "eval"}), (changed, {"attack_bn": "train"})):
        meta = json.loads((folder / "config.json").read_text())
        meta["config"].update(extra)
        (folder / "config.json").write_text(json.dumps(meta))
    labels = dict(zip(collect(root)["run_id"], collect(root)["method_label"], strict=True))
    assert labels[older.name] == labels[newer.name] == "pgd-at"
    assert labels[changed.name] == "rbl (attack_bn=train)" and labels[run_id("rbl", 1)] == "rbl (attack_bn=eval)"


def test_robust_vs_clean_keeps_its_axes_with_a_long_legend() -> None:
    """18 long method labels and 7 URs: the figure grows for its legend instead of squashing the axes."""
    labels = [f"{m} (robustlt_alpha=0.3, robustlt_beta=0.8)" for m in TWELVE] + [f"reat (tau={t})" for t in range(6)]
    rng = np.random.default_rng(0)
    data = pd.DataFrame([{"Method": m, "UR": str(u), "clean": rng.uniform(50, 90), "robust": rng.uniform(30, 70)}
                         for m in labels for u in (1, 10, 20, 50, 100, 200, 500)])
    fig = robust_vs_clean(data, method_palette(labels), "pgd20", "t")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.canvas.draw()
    (ax,) = fig.axes
    assert ax.get_position().height > 0.6 and ax.get_position().width > 0.25


def test_palette_is_fixed_in_registry_order() -> None:
    palette = method_palette(["reat (variant=paper)", "rbl", "zeta", "pgd-at", "rbl"])
    assert list(palette) == ["pgd-at", "rbl", "reat (variant=paper)", "zeta"]
    assert len(set(palette.values())) == 4
    assert method_palette(["zeta", "pgd-at", "rbl", "reat (variant=paper)"]) == palette


def test_training_and_evaluation_devices_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "results"
    devices = {("pgd-at", 0): ["NVIDIA H200", "NVIDIA H200"], ("pgd-at", 1): ["NVIDIA H200", "cpu (2 threads)"],
               ("rbl", 0): None}
    for (method, seed), per_epoch in devices.items():
        folder = write_run(root, method, seed)
        if per_epoch is not None:
            lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            (folder / "metrics.jsonl").write_text(
                "".join(json.dumps({**line, "device": d}) + "\n" for line, d in zip(lines, per_epoch, strict=True)))
        record = json.loads((folder / "eval.json").read_text())
        for name, res in record["attacks"].items():
            res["device"] = "cpu (1 threads)" if name == "clean" else "NVIDIA H200"
        (folder / "eval.json").write_text(json.dumps(record))
    df = collect(root)
    trained = df.drop_duplicates("run_id").set_index(["method", "seed"])["trained_on"].to_dict()
    assert trained == {("pgd-at", 0): "NVIDIA H200", ("pgd-at", 1): "NVIDIA H200 + cpu (2 threads)",
                       ("rbl", 0): "not recorded"}
    assert set(df.loc[df["attack"] == "clean", "eval_device"]) == {"cpu (1 threads)"}
    index = write_report(root, tmp_path / "report").read_text()
    assert ("Trained on (runs): NVIDIA H200 (1), NVIDIA H200 + cpu (2 threads) (1), not recorded (1). "
            "Evaluated on (run and attack results): NVIDIA H200 (6), cpu (1 threads) (3)") in index
    header = (tmp_path / "report" / "tables" / "runs.csv").read_text().splitlines()[0]
    assert header.endswith("per_class_acc,trained_on,eval_device")


def test_runs_of_two_protocols_never_share_a_row(tmp_path: Path) -> None:
    """The same method evaluated on other test images, or trained in another precision, gets its own row."""
    for seed in (0, 1):
        write_run(tmp_path, "pgd-at", seed)
    other_images = write_run(tmp_path, "rbl", 0)
    bf16 = write_run(tmp_path, "rbl", 1)
    record = json.loads((other_images / "eval.json").read_text())
    (other_images / "eval.json").write_text(json.dumps({**record, "n_test": 200}))
    meta = json.loads((bf16 / "config.json").read_text())
    meta["config"]["precision"] = "auto"
    (bf16 / "config.json").write_text(json.dumps(meta))
    lines = (bf16 / "metrics.jsonl").read_text().splitlines()
    (bf16 / "metrics.jsonl").write_text("".join(json.dumps({**json.loads(x), "precision": "bf16"}) + "\n"
                                                for x in lines))
    df = collect(tmp_path)
    labels = dict(zip(df["run_id"], df["method_label"], strict=True))
    assert labels[run_id("pgd-at", 0)] == labels[run_id("pgd-at", 1)] == "pgd-at"
    assert labels[run_id("rbl", 0)] != labels[run_id("rbl", 1)]
    assert "test_images=200" in labels[run_id("rbl", 0)] and "precision=bf16" in labels[run_id("rbl", 1)]
    assert dict(zip(df["run_id"], df["precision"], strict=True))[run_id("rbl", 1)] == "bf16"


def test_an_auto_run_pools_with_the_precision_it_resolved_to(tmp_path: Path) -> None:
    write_run(tmp_path, "pgd-at", 0)
    auto = write_run(tmp_path, "pgd-at", 1)
    meta = json.loads((auto / "config.json").read_text())
    (auto / "config.json").write_text(json.dumps({**meta, "config": {**meta["config"], "precision": "auto"}}))
    with (auto / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps({"epoch": 3, "precision": "fp32"}) + "\n")
    first = tmp_path / run_id("pgd-at", 0) / "config.json"
    meta0 = json.loads(first.read_text())
    first.write_text(json.dumps({**meta0, "config": {**meta0["config"], "precision": "fp32"}}))
    assert set(collect(tmp_path)["method_label"]) == {"pgd-at"}


def test_unreadable_eval_json_is_named_and_the_other_runs_are_reported(tmp_path: Path) -> None:
    write_run(tmp_path, "pgd-at", 0)
    broken = write_run(tmp_path, "rbl", 0, eval_text="{not json")
    warnings: list[str] = []
    index = write_report(tmp_path, tmp_path / "out", warn=warnings.append)
    assert run_id("pgd-at", 0) in index.read_text()
    assert warnings == [f"left out {broken.name}: unreadable {broken / 'eval.json'} (Expecting property name "
                        "enclosed in double quotes: line 1 column 2 (char 1)); rerun `bench eval "
                        f"{broken}` or delete the run"]
    only_broken = tmp_path / "only"
    write_run(only_broken, "rbl", 0, eval_text="{not json")
    with pytest.raises(InputError, match=r"1 finished run\(s\) have unreadable records, e.g. unreadable .*eval.json"):
        collect(only_broken)


def test_a_report_can_be_limited_to_some_runs(tmp_path: Path) -> None:
    for method in ("pgd-at", "rbl"):
        write_run(tmp_path, method, 0)
    index = write_report(tmp_path, tmp_path / "out", run_ids={run_id("rbl", 0)}).read_text()
    assert "1 finished runs used" in index and run_id("pgd-at", 0) not in index


TWELVE = ["pgd-at", "trades", "robal", "at-bsl", "rbl", "tail", "reat", "taet", "awp", "robustlt+pgd-at",
          "robustlt+at-bsl", "robustlt+reat"]


def test_twelve_methods_get_distinct_colours_and_markers() -> None:
    palette = method_palette(TWELVE)
    assert list(palette)[-3:] == ["robustlt+pgd-at", "robustlt+at-bsl", "robustlt+reat"]  # after every base
    colours = np.array(list(palette.values()))
    gaps = np.linalg.norm(colours[:, None] - colours[None], axis=2) + np.eye(len(colours))
    assert gaps.min() > 0.1  # no two near-identical colours (pgd-at and taet were two pinks)
    assert len(set(method_markers(palette).values())) == 12


def test_tsne_maps_wrap_into_at_most_four_columns() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 5)
    maps = [(m, [rng.normal(size=(20, 2)), rng.normal(size=(20, 2))]) for m in TWELVE]
    fig = tsne_grid(maps, labels, ["a", "b", "c", "d"], [40, 30, 20, 10], [3], ["clean", "PGD-20"], "t")
    shown = [ax for ax in fig.axes if ax.axison]
    assert len(shown) == 24 and {ax.get_subplotspec().colspan.start for ax in shown} == {0, 1, 2, 3}
    assert [ax.get_title() for ax in shown if ax.get_title()] == TWELVE
    assert fig.get_size_inches()[0] < 14


def test_ae_heatmaps_wrap_into_at_most_four_columns() -> None:
    epochs = pd.DataFrame(np.full((4, 3), 25.0), columns=[0, 1, 2])
    fig = ae_distribution([(m, epochs) for m in TWELVE[:7]], ["a", "b", "c", "d"], [40, 30, 20, 10], "t")
    shown = [ax for ax in fig.axes if ax.axison and ax.get_title()]
    assert [ax.get_title() for ax in shown] == TWELVE[:7]
    assert {ax.get_subplotspec().colspan.start for ax in shown} == {0, 1, 2, 3}
    assert [ax.get_subplotspec().rowspan.start for ax in shown] == [0] * 4 + [1] * 3
    assert fig.get_size_inches()[0] < 16
