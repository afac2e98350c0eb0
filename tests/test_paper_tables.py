"""The paper's Tables 5 and 7: params and GFLOPs computed by vov3d against the printed figures."""

import os
import re

import pytest
import torch.nn as nn

from conftest import REPO
from vov3d.bench import paper_tables, paper_values
from vov3d.config import load_config
from vov3d.models import build_model
from vov3d.models.units import build_middle
from vov3d.utils.model_stats import activations_m, gflops, shape_counts, stats_input

# Known, explained disagreement: the code's VoV3D-M (3,204,286 params) prints as 3.2 M; the paper says 3.3 M.
EXPECTED_MISMATCH = {("VoV3D-M", "params_check")}


@pytest.fixture(scope="module")
def tables():
    return {5: paper_tables.table5(), 7: paper_tables.table7(include_zoo=False)}


def test_table5_and_7_within_the_papers_rounding(tables):
    checked = 0
    for number, table in tables.items():
        for row in table["rows"]:
            if row.get("config", "not in vov3d") == "not in vov3d":
                continue
            for key in ("params_check", "gflops_check"):
                expected_bad = number == 5 and (row["model"], key) in EXPECTED_MISMATCH
                assert (row[key] == "MISMATCH") == expected_bad, (number, row["model"], row["frames"], key, row)
                checked += 1
    assert checked == 2 * (len(paper_values.TABLE5) + 4)


def test_table5_and_7_exact_counts(tables):
    # The official implementation's counts (shared/reference/zoo-notes.md), pinned so a change of either the
    # models or the counter shows here, not only when it crosses a rounding boundary.
    t5 = {(r["model"], r["frames"]): r for r in tables[5]["rows"]}
    assert t5["VoV3D-M", 16]["params"] == 3_204_286 and t5["VoV3D-L", 16]["params"] == 5_834_094
    assert t5["VoV3D-M", 16]["gflops"] == pytest.approx(6.42, abs=0.005)
    assert t5["VoV3D-L", 16]["gflops"] == pytest.approx(12.16, abs=0.005)
    t7 = {r["model"]: r for r in tables[7]["rows"]}
    assert t7["X3D-M"]["params"] == 3_794_322 and t7["X3D-L"]["params"] == 6_153_432
    assert t7["VoV3D-M"]["params"] == 3_667_360 and t7["VoV3D-L"]["params"] == 6_297_168
    assert t7["VoV3D-L"]["crop"] == 224 and t7["VoV3D-L"]["gflops"] == pytest.approx(9.31, abs=0.005)
    assert t7["X3D-L"]["gflops"] == pytest.approx(9.16, abs=0.005)


def test_rounding_check_names_the_convention():
    assert paper_tables.rounding_check(6.184, 6.1) == "truncated"
    assert paper_tables.rounding_check(6.424, 6.4) == "rounded"
    assert paper_tables.rounding_check(6.15, 6.2) == "rounded"
    assert paper_tables.rounding_check(3.204, 3.3) == "MISMATCH"
    assert paper_tables.rounding_check(6.2, 6.1) == "MISMATCH"  # a truncation gives at most 6.1999...


def test_shape_counts_equal_fvcore_on_a_small_model():
    # A tiny clip keeps fvcore's trace cheap; VoV3D's SE gates run as F.linear on conv weights, which
    # module hooks would miss, and its T-OSA concatenation and residuals are all exercised.
    opts = ["DATA.NUM_FRAMES", "2", "DATA.TRAIN_CROP_SIZE", "64", "DATA.TEST_CROP_SIZE", "96"]
    cfg = load_config(os.path.join(str(REPO), "configs/SSv1/VoV3D_M_16x1.yaml"), opts,
                      overrides={"NUM_GPUS": 0})
    model = build_model(cfg)
    x = stats_input(cfg)
    counts = shape_counts(model, x)
    assert counts["macs"] == round(gflops(model, x) * 1e9)
    assert counts["activations"] == round(activations_m(model, x) * 1e6)
    assert next(model.parameters()).device.type == "cpu"  # the model itself is left alone


@pytest.mark.parametrize("s", [1, 2])
def test_table1_formulas_equal_the_built_units(s):
    table = paper_tables.table1(C=24, T=4, H=8, W=8, t=3, k=5, s=s)
    assert [r["params_check"] for r in table["rows"]] == ["equal"] * 5
    assert [r["flops_check"] for r in table["rows"]] == ["equal"] * 5
    # k reaches the built unit: D(2+1)D with a 1x5x5 spatial kernel.
    unit = nn.Sequential(build_middle("d2plus1d", 24, s, spatial_kernel=5))
    assert unit[0].kernel_size == (1, 5, 5)


def test_model_zoo_quotes_the_paper_and_names_existing_configs():
    text = open(os.path.join(str(REPO), "MODEL_ZOO.md")).read()
    for i, (model, frames, gf, views, t1, t5, _ft1, _ft5) in enumerate(paper_values.TABLE5, start=1):
        params = paper_values.TABLE5_PARAMS_M[model]
        assert f"{params}M / {gf}×{views} (T5 r{i}) | {t1} / {t5} |" in text, (model, frames)
    for i, (model, _pre, _f, params, gf, views, t1, t5) in enumerate(paper_values.TABLE7, start=1):
        if model in paper_tables._STEMS:
            assert f"{params}M / {gf}×{views} (T7 r{i}) | {t1} / {t5} |" in text, model
    assert "xxx" not in text and "another crop" not in text
    for path in set(re.findall(r"configs/[\w/.-]+\.yaml", text)):
        assert os.path.exists(os.path.join(str(REPO), path)), path


def test_tool_prints_json_and_rejects_an_unknown_table(capsys):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("tool_paper_tables",
                                                  os.path.join(str(REPO), "tools", "paper_tables.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--tables", "1", "--json", "--C", "8", "--T", "2", "--H", "4", "--W", "4", "--s", "2"]) == 0
    (table,) = json.loads(capsys.readouterr().out)
    assert table["table"] == 1 and {r["flops_check"] for r in table["rows"]} == {"equal"}
    assert tool.main(["--tables", "9"]) == 2
    assert "no table [9]" in capsys.readouterr().err
