"""The HTML report (``trajlab report``, ``trajlab reproduce``) and the presets' claim checks.

Pure page functions on hand-made inputs (self-contained, escaped, verdicts where they belong),
then the commands on two tiny real sweeps (not-norms and saxe-dynamics, one seed, depth 2) run by
``trajlab reproduce``, then the claim checks on data made to contradict them (each check can fail).
HTML is read back with the standard library's parser, not with the code that wrote it.
"""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from trajlab.presets import get_preset
from trajlab.presets.claims import NOT_MEASURED, check_claims
from trajlab.presets.preset import Claim
from trajlab.report import ClaimCheck, IndexEntry, claims_summary, dataframe_html, index_page, report_page
from helpers import invoke

PNG = b"\x89PNG\r\n\x1a\n"


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


class Page(HTMLParser):
    """What a page holds, as the standard library parses it: tags with attributes, visible text,
    the text of each table row (by its class), and the scripts."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.rows: list[tuple[str, list[str]]] = []
        self.scripts: list[str] = []
        self._row = None
        self._cell = None
        self._script = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "tr":
            self._row = (attrs.get("class") or "", [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "script":
            self._script = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row[1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "script":
            self.scripts.append("".join(self._script))
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self._script.append(data)
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def assert_self_contained(text: str) -> None:
    """No address outside the page: only data: images, #fragment links, inline style and script."""
    page = Page(text)
    assert "http://" not in text and "https://" not in text and "file:" not in text
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base"), tag
        if "src" in attrs:
            assert tag == "img" and attrs["src"].startswith("data:image/png;base64,"), (tag, attrs["src"][:60])
        if "href" in attrs:
            assert attrs["href"].startswith("#") or not re.match(r"^[a-z]+:", attrs["href"]), attrs["href"]
        if tag == "script":
            assert "src" not in attrs
    assert "url(" not in text and "@import" not in text


def small_figure() -> Figure:
    figure = Figure(figsize=(2, 1.5))
    figure.subplots().plot([0, 1, 2], [1, 0, 2])
    return figure


# --- the page functions ---------------------------------------------------------------------------


def test_page_is_self_contained_and_has_every_section():
    runs = pd.DataFrame({"run_id": ["a1", "b2"], "model.depth": [1, 2], "status": ["done", "max_steps"], "steps": [10, 20]})
    configs = {"a1": {"model.depth": 1, "seed": 0, "metrics": ["train_loss"]},
               "b2": {"model.depth": 2, "seed": 0, "metrics": ["train_loss"]},
               "c3": {"model.depth": 3, "seed": 0, "metrics": ["train_loss"]}}
    text = report_page(
        "demo", description="a demo", claims=[ClaimCheck("claim one", 0.5, True)],
        figures={"curve": small_figure(), "broken": "could not be drawn (ValueError: no rows)"},
        tables=[("final values", runs.set_index("model.depth"))], configs=configs, runs=runs,
        manifest={"presets": ["demo"], "git_commit": "abc", "configs": configs, "versions": {"jax": "0.1"}},
        notes=["a note"],
    )
    assert_self_contained(text)
    page = Page(text)
    words = page.all_text()
    for heading in ("Published claims", "Figures", "Tables", "Runs and their configs", "Provenance"):
        assert heading in words
    assert "a demo" in words and "a note" in words and "could not be drawn (ValueError: no rows)" in words
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 1 and images[0]["alt"] == "curve"
    import base64

    assert base64.b64decode(images[0]["src"].split(",", 1)[1]).startswith(PNG)
    # Every run of the manifest has its config on demand; the unfinished one says so.
    details = {attrs["id"]: attrs for tag, attrs in page.tags if tag == "details" and "id" in attrs}
    assert set(details) == {"run-a1", "run-b2", "run-c3"}
    assert "not finished" in words and "done, 10 steps" in words
    # The fields shared by all runs are listed once, the others per run.
    shared = [cells for css, cells in page.rows if cells and cells[0] == "seed"]
    assert shared == [["seed", "0"]]
    assert ["model.depth", "3"] in [cells for _, cells in page.rows]
    # Run ids in tables link to their config.
    assert ("a", {"href": "#run-a1"}) in page.tags
    assert ["git_commit", "abc"] in [cells for _, cells in page.rows]
    assert "configs" not in [cells[0] for _, cells in page.rows if cells]  # provenance leaves them out


def test_claims_are_shown_with_their_measured_values_and_verdicts():
    checks = [
        ClaimCheck("depth helps", "depth 3: 0.01 vs 0.05", True),
        ClaimCheck("rank falls", 1.23456789, False),
        ClaimCheck("plain text claim", None, None),
        ClaimCheck("needs more data", f"{NOT_MEASURED}: no run at scale 1e-4", None),
    ]
    page = Page(report_page("claims", claims=checks))
    rows = [(css, cells) for css, cells in page.rows if css.startswith("claim")]
    assert rows == [
        ("claim holds", ["depth helps", "depth 3: 0.01 vs 0.05", "\u2713 holds"]),
        ("claim fails", ["rank falls", "1.235", "\u2717 does not hold"]),
        ("claim unchecked", ["plain text claim", "-", "not checked"]),
        ("claim unchecked", ["needs more data", f"{NOT_MEASURED}: no run at scale 1e-4", "not checked"]),
    ]
    assert "claims: 1 of 4 holds, 2 not checked on this sweep" in page.all_text()
    assert claims_summary([]) == "no published claims"
    assert claims_summary([ClaimCheck("a", 1, True), ClaimCheck("b", 1, True)]) == "claims: 2 of 2 hold"


def test_every_text_is_escaped():
    evil = '<script>alert("x")</script> & "quotes" \'single\''
    runs = pd.DataFrame({"run_id": ['r"><b>1'], "note": [evil], "status": ["done"], "steps": [1]})
    configs = {'r"><b>1': {"model.name": evil, "seed": 0}, "r2": {"model.name": "plain", "seed": 0}}
    text = report_page(
        evil, description=evil, claims=[ClaimCheck(evil, evil, False)], figures={evil: "could not be drawn " + evil},
        tables=[(evil, runs)], configs=configs, runs=runs, manifest={"presets": [evil], "configs": configs},
        notes=[evil],
    )
    assert "<script>alert" not in text and "<b>" not in text
    page = Page(text)
    assert len(page.scripts) == 1 and "alert" not in page.scripts[0]  # only the page's own script
    assert [tag for tag, _ in page.tags].count("b") == 0
    assert page.all_text().count('<script>alert("x")</script>') >= 8  # shown as text, everywhere it was put
    assert_self_contained(text)
    # Attributes too: the run's anchor and link carry the id as given.
    assert ("details", {"class": "run", "id": 'run-r"><b>1'}) in page.tags
    assert ("a", {"href": '#run-r"><b>1'}) in page.tags


def test_dataframe_html_formats_like_the_terminal_table():
    frame = pd.DataFrame(
        {"model.depth": [1, 1, 2], "model.scale": [0.001, 0.01, 0.001], "test_error": [0.123456, np.nan, 1e-7],
         "status": ["done", "max_steps", "done"]}
    ).set_index(["model.depth", "model.scale"])
    page = Page(dataframe_html(frame, caption="final values"))
    assert [cells for _, cells in page.rows] == [
        ["model.depth", "model.scale", "test_error", "status"],
        ["1", "0.001", "0.1235", "done"],
        ["", "0.01", "-", "max_steps"],  # the repeated outer level is left blank
        ["2", "0.001", "1e-07", "done"],
    ]
    with pytest.raises(ValueError, match="DataFrame"):
        dataframe_html([1, 2])


def test_index_page_has_one_line_per_preset():
    entries = [
        IndexEntry("alpha", "alpha/report.html", "first", 4, {"done": 3, "max_steps": 1},
                   [ClaimCheck("a", 1, True), ClaimCheck("b", 1, False)]),
        IndexEntry("beta", None, "second", error="--out: cannot write <here>"),
    ]
    text = index_page(entries)
    assert_self_contained(text)
    page = Page(text)
    assert [cells for css, cells in page.rows][1:] == [
        ["alpha", "first", "claims: 1 of 2 holds; 4 runs (3 done, 1 max_steps)"],
        ["beta", "second", "failed: --out: cannot write <here>"],
    ]
    assert ("a", {"href": "alpha/report.html"}) in page.tags


# --- the commands on real tiny sweeps -------------------------------------------------------------

TINY = ["--set", "seed=0", "--set", "model.depth=2"]
FIGURES = {
    "not-norms": ["norms_against_loss"],
    "saxe-dynamics": ["mode_strengths", "mode_error", "mode_table"],
}


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "results"
    result = invoke("reproduce", "--quick", *TINY, "--no-progress", "--out", out, "not-norms", "saxe-dynamics")
    assert result.exit_code == 0, result.output + result.stderr
    return out, result


def test_reproduce_writes_each_report_and_an_index(reproduced):
    out, result = reproduced
    index = Page((out / "index.html").read_text())
    assert_self_contained((out / "index.html").read_text())
    lines = {cells[0]: cells for css, cells in index.rows[1:]}
    assert set(lines) == {"not-norms", "saxe-dynamics"}
    assert lines["not-norms"][2] == "claims: 1 of 1 holds; 2 runs (2 done)"
    assert lines["saxe-dynamics"][2] == "claims: 3 of 3 hold; 2 runs (2 max_steps)"
    links = [attrs["href"] for tag, attrs in index.tags if tag == "a"]
    assert links == ["not-norms/report.html", "saxe-dynamics/report.html"]
    for href in links:
        assert (out / href).is_file()
    assert "not-norms: claims: 1 of 1 holds" in result.stdout

    for name in ("not-norms", "saxe-dynamics"):
        folder = out / name
        text = (folder / "report.html").read_text()
        assert_self_contained(text)
        page = Page(text)
        preset = get_preset(name)
        # Claims: the preset's own texts, each with a measured value and a verdict.
        claims = [cells for css, cells in page.rows if css.startswith("claim")]
        assert [cells[0] for cells in claims] == [c.text for c in preset.claims]
        assert all(cells[2] == "\u2713 holds" and cells[1] not in ("", "-") for cells in claims), claims
        # Figures: the preset's, embedded.
        alts = [attrs["alt"] for tag, attrs in page.tags if tag == "img"]
        assert alts == list(FIGURES[name])
        # Tables and configs: every finished run in the final table, linked to its config.
        runs = pd.read_parquet(folder / "runs.parquet")
        manifest = json.loads((folder / "manifest.json").read_text())
        ids = {attrs["id"][4:] for tag, attrs in page.tags if tag == "details" and attrs.get("id", "").startswith("run-")}
        assert ids == set(manifest["configs"]) == set(runs["run_id"])
        linked = {attrs["href"][5:] for tag, attrs in page.tags if tag == "a" and attrs.get("href", "").startswith("#run-")}
        assert linked == set(runs["run_id"])
        assert (folder / "final_table.csv").exists()
        assert "final values" in page.all_text() and manifest["git_commit"] in page.all_text()


def test_reproduce_resumes_without_rerunning(reproduced):
    out, _ = reproduced
    files = [out / "saxe-dynamics" / f for f in ("runs.parquet", "trajectories.parquet")]
    before = [(f.read_bytes(), f.stat().st_mtime_ns) for f in files]
    result = invoke("reproduce", "--quick", *TINY, "--no-progress", "--out", out, "saxe-dynamics")
    assert result.exit_code == 0, result.stderr
    assert [(f.read_bytes(), f.stat().st_mtime_ns) for f in files] == before
    # The index now lists only what this call reproduced.
    rows = Page((out / "index.html").read_text()).rows[1:]
    assert [cells[0] for _, cells in rows] == ["saxe-dynamics"]


def test_report_command_writes_the_page(reproduced, tmp_path):
    out, _ = reproduced
    folder = tmp_path / "sweep"
    shutil.copytree(out / "saxe-dynamics", folder)
    (folder / "report.html").unlink()
    result = invoke("report", folder)
    assert result.exit_code == 0, result.stderr
    assert "claims: 3 of 3 hold" in result.stdout and f"wrote {folder / 'report.html'}" in result.stdout
    # The same page as reproduce's, but for the folder it names.
    source = out / "saxe-dynamics"
    expected = (source / "report.html").read_text().replace(str(source.resolve()), str(folder.resolve()))
    assert (folder / "report.html").read_text() == expected


@pytest.mark.parametrize("presets", [[], ["no-such-preset"]], ids=["no preset", "unknown preset"])
def test_report_of_a_folder_without_a_known_preset(reproduced, tmp_path, presets):
    out, _ = reproduced
    folder = tmp_path / "sweep"
    shutil.copytree(out / "not-norms", folder)
    (folder / "report.html").unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["presets"] = presets
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("report", folder, "--output", tmp_path / "new" / "page.html")
    assert result.exit_code == 0, result.stderr
    assert not (folder / "report.html").exists()
    text = (tmp_path / "new" / "page.html").read_text()
    assert_self_contained(text)
    page = Page(text)
    words = page.all_text()
    assert "Published claims" not in words and not [t for t, _ in page.tags if t == "img"]
    assert "final values" in words and "Runs and their configs" in words
    assert ("no preset" in words) if not presets else ("'no-such-preset' is unknown" in words)
    ids = {attrs["id"] for tag, attrs in page.tags if tag == "details" and "id" in attrs}
    assert ids == {f"run-{i}" for i in manifest["configs"]}


def test_report_on_a_missing_folder_fails_with_one_line(tmp_path):
    missing = tmp_path / "nothing-here"
    result = invoke("report", missing)
    assert result.exit_code == 2
    assert str(missing) in _error_line(result)
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("report", empty)
    assert result.exit_code == 2 and "not a trajlab sweep folder" in _error_line(result)
    assert list(empty.iterdir()) == []


def test_report_output_that_is_a_folder_fails(reproduced, tmp_path):
    out, _ = reproduced
    result = invoke("report", out / "not-norms", "--output", tmp_path)
    assert result.exit_code == 2 and "--output" in _error_line(result)


@pytest.mark.parametrize(
    "args, words",
    [
        (["no-such-preset"], ["no-such-preset", "not-norms"]),
        (["not-norms", "--set", "model.depth=0"], ["model.depth", "an integer in [1, 1000]"]),
        (["not-norms", "--max-batch", "0"], ["--max-batch"]),
    ],
)
def test_reproduce_bad_input_fails_before_writing(tmp_path, args, words):
    out = tmp_path / "results"
    result = invoke("reproduce", "--no-progress", "--out", out, *args)
    assert result.exit_code == 2
    line = _error_line(result)
    for word in words:
        assert word in line
    assert not out.exists()


# --- the claim checks can fail ------------------------------------------------------------------


def _load(folder: Path):
    from trajlab.store import load

    return load(folder)


def _verdicts(preset: str, data) -> list:
    return [(check.holds, check.measured) for check in check_claims(get_preset(preset).claims, data)]


def test_not_norms_claim_fails_when_the_unobserved_entry_shrinks(reproduced):
    data = _load(reproduced[0] / "not-norms")
    assert [v for v, _ in _verdicts("not-norms", data)] == [True]
    shrinking = data.trajectories.copy()
    for run_id, rows in shrinking.groupby("run_id"):
        shrinking.loc[rows.index, "unobserved_max_abs"] = rows["unobserved_max_abs"].to_numpy()[::-1]
    holds, measured = _verdicts("not-norms", SimpleNamespace(**{**vars(data), "trajectories": shrinking}))[0]
    assert holds is False and "unobserved_max_abs does not grow" in measured
    high_rank = data.trajectories.assign(effective_rank=1.5)
    assert _verdicts("not-norms", SimpleNamespace(**{**vars(data), "trajectories": high_rank}))[0][0] is False


def test_saxe_claims_fail_on_swapped_or_distorted_modes(reproduced):
    data = _load(reproduced[0] / "saxe-dynamics")
    assert [v for v, _ in _verdicts("saxe-dynamics", data)] == [True, True, True]
    swapped = data.trajectories.rename(columns={"mode_0": "mode_3", "mode_3": "mode_0"})
    swapped = swapped.assign(mode_0=swapped["mode_0"] * 6, mode_3=swapped["mode_3"] / 6)  # still reach s / 2
    verdicts = _verdicts("saxe-dynamics", SimpleNamespace(**{**vars(data), "trajectories": swapped}))
    assert verdicts[1][0] is False, verdicts[1]  # the weakest mode now rises first
    # Twice as slow: still logistic in shape after refitting u0, but the rise time is off by 2x.
    slow = data.trajectories.assign(t=data.trajectories["t"] * 2)
    verdicts = _verdicts("saxe-dynamics", SimpleNamespace(**{**vars(data), "trajectories": slow}))
    assert verdicts[0][0] is False and verdicts[2][0] is False, verdicts


def test_claims_of_a_sweep_that_lacks_their_data_are_not_checked(reproduced):
    """Every preset's claims on another preset's sweep: not checked (with a reason), never an error."""
    data = _load(reproduced[0] / "not-norms")
    for preset in ("dmf-completion", "dmf-sensing", "dmf-dynamics", "acceleration-lp", "balanced-convergence",
                   "saxe-dynamics"):
        for check in check_claims(get_preset(preset).claims, data):
            assert check.holds is None and check.measured.startswith(NOT_MEASURED), (preset, check)
            assert not str(check.measured).startswith("could not be measured"), (preset, check)
    empty = SimpleNamespace(runs=pd.DataFrame(), trajectories=pd.DataFrame(), baselines=pd.DataFrame(), manifest={})
    assert [c.holds for c in check_claims(get_preset("not-norms").claims, empty)] == [None]
    broken = Claim("raises", lambda data: 1 / 0)
    plain = "a claim in words"
    checks = check_claims([broken, plain], data)
    assert [(c.text, c.holds) for c in checks] == [("raises", None), (plain, None)]
    assert checks[0].measured.startswith("could not be measured: ZeroDivisionError")


def _dmf_data(depth3_error: float, depth3_rank: float, nuclear_error: float = 0.05):
    problem = {"problem.kind": "completion", "problem.m": 10, "problem.observations": 30, "problem.path": None}
    rows = []
    for depth, scale, error, rank in [(2, 1e-2, 0.2, 9.0), (2, 1e-3, 0.1, 8.0), (3, 1e-2, 0.02, 6.0),
                                      (3, 1e-3, depth3_error, depth3_rank)]:
        rows.append({**problem, "model.depth": depth, "model.scale": scale, "optimizer.lr": 1e-3,
                     "run_id": f"d{depth}s{scale}", "status": "done", "steps": 100,
                     "final.test_error": error, "final.effective_rank": rank})
    baselines = pd.DataFrame([{**problem, "baseline": "nuclear_norm", "test_error": nuclear_error,
                               "effective_rank": 7.0, "status": "optimal"}])
    return SimpleNamespace(runs=pd.DataFrame(rows), trajectories=pd.DataFrame(), baselines=baselines, manifest={})


def test_dmf_solution_claims_decide_on_the_numbers():
    holds = [c.holds for c in check_claims(get_preset("dmf-completion").claims, _dmf_data(0.001, 5.0))]
    assert holds == [True, True, None]  # the third (5000 observations) is not measured: none in the data
    assert check_claims(get_preset("dmf-completion").claims, _dmf_data(0.06, 5.0))[0].holds is False  # error
    assert check_claims(get_preset("dmf-completion").claims, _dmf_data(0.001, 7.5))[0].holds is False  # rank
    assert check_claims(get_preset("dmf-completion").claims, _dmf_data(0.5, 5.0))[1].holds is False  # scale
    recovered = check_claims(get_preset("dmf-completion").claims, _dmf_data(0.001, 5.0, nuclear_error=1e-9))[0]
    assert recovered.holds is None and "recovers the matrix" in recovered.measured


def _acceleration_data(l4_deep: float, l2_deep: float):
    """Excess losses at step 1000 and 2000 per (p, optimizer, depth); the optimum is 1.0."""
    excess = {
        (4, "gd", 1): (1e-4, 1e-6), (4, "gd", 2): (1e-5, l4_deep), (4, "gd", 3): (1e-5, l4_deep),
        (4, "adagrad", 1): (1e-3, 1e-5), (4, "adadelta", 1): (1e-3, 1e-5),
        (2, "gd", 1): (1e-6, 1e-9), (2, "gd", 2): (1e-5, l2_deep), (2, "gd", 3): (1e-5, l2_deep),
    }
    runs, trajectories = [], []
    for i, ((p, name, depth), (at_1000, at_2000)) in enumerate(excess.items()):
        run_id = f"r{i}"
        runs.append({"run_id": run_id, "problem.p": float(p), "optimizer.name": name, "model.depth": depth,
                     "optimizer.lr": 0.1, "steps": 2000, "status": "max_steps"})
        for step, value in ((0, 10.0), (1000, at_1000), (2000, at_2000)):
            trajectories.append({"run_id": run_id, "step": step, "train_loss": 1.0 + value})
    baselines = pd.DataFrame([{"problem.p": p, "baseline": "lp_optimum", "train_loss": 1.0} for p in (2.0, 4.0)])
    return SimpleNamespace(runs=pd.DataFrame(runs), trajectories=pd.DataFrame(trajectories), baselines=baselines)


def test_acceleration_claims_decide_on_the_numbers():
    claims = get_preset("acceleration-lp").claims
    assert [c.holds for c in check_claims(claims, _acceleration_data(1e-9, 1e-9))] == [True, True, True]
    # Deep GD slower than depth 1 on l4: the first two claims fail.
    assert [c.holds for c in check_claims(claims, _acceleration_data(1e-5, 1e-9))][:2] == [False, False]
    # A gain on l2 as large as on l4: the third fails.
    assert check_claims(claims, _acceleration_data(1e-9, 1e-12))[2].holds is False


def _margin_data(positive_m2: int, above_bound: bool):
    runs, trajectories = [], []
    for m in (1, 2):
        for depth in (2, 3):
            for seed in range(10):
                run_id = f"m{m}d{depth}s{seed}"
                margin = 0.2 if (m == 1 and seed < 5) or (m == 2 and seed < positive_m2) else -0.3
                runs.append({"run_id": run_id, "problem.m": m, "model.depth": depth, "model.scale": 0.5,
                             "optimizer.lr": 0.05, "status": "done", "steps": 100})
                for step in (0, 10, 100):
                    loss = 0.5 * (0.5 if step else 1.0) ** (step / 10) if not above_bound else 0.5
                    trajectories.append({"run_id": run_id, "step": step, "train_loss": loss,
                                         "deficiency_margin": margin})
    return SimpleNamespace(runs=pd.DataFrame(runs), trajectories=pd.DataFrame(trajectories),
                           baselines=pd.DataFrame())


def test_balanced_convergence_claims_decide_on_the_numbers():
    claims = get_preset("balanced-convergence").claims
    checks = check_claims(claims, _margin_data(0, above_bound=False))
    assert [c.holds for c in checks[1:3]] == [True, True]
    assert checks[3].holds is None  # one init scale: no plateau comparison
    assert check_claims(claims, _margin_data(5, above_bound=False))[1].holds is False  # m = 2: half positive
    assert check_claims(claims, _margin_data(0, above_bound=True))[2].holds is False  # loss above the bound
