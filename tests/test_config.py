"""Tests for optctl.io.config: shipped configs, round trips, strict validation, overrides."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
import yaml

from optctl.baselines import families as baselines_module
from optctl.errors import AssumptionWarning, OptctlError, SpecError, SpecTypeError
from optctl.io.config import (
    BASELINE_NAMES,
    ConfigError,
    RunConfig,
    default_config_path,
    dump_config,
    load_config,
    load_config_dict,
    with_overrides,
)
from optctl.spec import ProblemSpec, SolverOptions

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# Solve configs; the sweep configs (sweep_*.yaml) are checked in tests/test_sweep.py.
SHIPPED = sorted(p for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith(("sweep_", "fit_")))

# A valid config; each bad-input case below edits one line of it.
BASE = """\
schema_version: 1
name: base
model:
  a: 3.5
  b: 5.0
  N: 1000
  sigma: 0.5
  tail: false
training:
  T: 1000
  batch_size: 5
  eta_max: 1.0
solver:
  grid: auto
  K: 100
baselines: [constant, power_law, linear_decay, cosine, wsd]
"""


def _edit(old: str, new: str) -> str:
    assert old in BASE, f"test table error: {old!r} is not in BASE"
    return BASE.replace(old, new, 1)


def _load_text(tmp_path: Path, text: str, name: str = "cfg.yaml") -> RunConfig:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_config(path)


# --- shipped configs ---------------------------------------------------------------------

# (file stem, expected ProblemSpec, expected solver grid): the values of MODEL.md §5.
HARD = ProblemSpec(a=3.5, b=5.0, N=1000, sigma=0.5, batch_size=5, T=1000, eta_max=1.0)
EXPECTED = [
    ("hard_phase", HARD, "auto"),
    ("easy_phase", dataclasses.replace(HARD, b=2.0), "auto"),
    (
        "regression",
        ProblemSpec(a=1.5, b=1.25, N=500, sigma=0.5, batch_size=1, T=500, eta_max=2.0),
        "per_step",
    ),
    ("long_horizon", dataclasses.replace(HARD, T=1_000_000), "refined"),
]


def test_every_expected_config_is_shipped() -> None:
    assert {p.stem for p in SHIPPED} >= {stem for stem, _, _ in EXPECTED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_config_loads_and_is_commented(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.source == str(path)
    assert cfg.baselines == BASELINE_NAMES
    assert path.read_text(encoding="utf-8").startswith("# ")


@pytest.mark.parametrize(("stem", "problem", "grid"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_shipped_config_values(stem: str, problem: ProblemSpec, grid: str) -> None:
    cfg = load_config(CONFIG_DIR / f"{stem}.yaml")
    assert cfg.problem == problem
    assert cfg.solver.grid == grid
    assert cfg.solver.K == SolverOptions().K


def test_phases_of_reference_cases() -> None:
    assert load_config(CONFIG_DIR / "hard_phase.yaml").problem.phase == "hard"
    assert load_config(CONFIG_DIR / "easy_phase.yaml").problem.phase == "easy"


def test_default_config_is_the_hard_phase_config() -> None:
    path = default_config_path()
    assert path.is_file()
    assert load_config(path) == load_config(CONFIG_DIR / "hard_phase.yaml")


def test_baseline_names_match_the_baselines_module() -> None:
    assert BASELINE_NAMES == baselines_module.BASELINE_NAMES


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_round_trip_through_dict(path: Path) -> None:
    cfg = load_config(path)
    assert load_config_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_round_trip_through_yaml_text(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    text = dump_config(cfg)
    assert load_config_dict(yaml.safe_load(text)) == cfg
    assert _load_text(tmp_path, text) == cfg


def test_to_dict_fills_every_default() -> None:
    minimal = "schema_version: 1\nmodel: {a: 2.0, b: 1.5}\ntraining: {T: 10}\n"
    d = load_config_dict(yaml.safe_load(minimal)).to_dict()
    assert d["name"] == "run"
    assert set(d) == {"schema_version", "name", "model", "training", "solver", "baselines"}
    assert set(d["model"]) | set(d["training"]) == {f.name for f in dataclasses.fields(ProblemSpec)}
    assert set(d["solver"]) == {f.name for f in dataclasses.fields(SolverOptions)}
    assert d["baselines"] == list(BASELINE_NAMES)


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    text = BASE.replace("name: base\n", "")
    assert _load_text(tmp_path, text, "my run.yaml").name == "my_run"


def test_empty_sections_and_baselines() -> None:
    d = yaml.safe_load(
        _edit("baselines: [constant, power_law, linear_decay, cosine, wsd]", "baselines: []")
    )
    d["solver"] = None  # `solver:` with every key commented out
    cfg = load_config_dict(d)
    assert cfg.baselines == ()
    assert cfg.solver == SolverOptions()


def test_yaml_1_2_floats_are_numbers(tmp_path: Path) -> None:
    text = _edit("  K: 100\n", "  K: 100\n  tol: 1e-8\n").replace("T: 1000", "T: 1e4")
    cfg = _load_text(tmp_path, text)
    assert cfg.solver.tol == pytest.approx(1e-8, rel=0.0, abs=0.0)
    assert cfg.problem.T == 10_000


# --- bad input: (id, line to replace, replacement, error type, field, value in message) ----

BAD = [
    # wrong types
    ("T-string", "T: 1000", 'T: "1000"', SpecTypeError, "training.T", "'1000'"),
    ("a-list", "a: 3.5", "a: [1]", SpecTypeError, "model.a", "[1]"),
    ("tail-string", "tail: false", 'tail: "yes"', SpecTypeError, "model.tail", "'yes'"),
    ("N-bool", "N: 1000", "N: true", SpecTypeError, "model.N", "True"),
    ("eta-bool", "eta_max: 1.0", "eta_max: yes", SpecTypeError, "training.eta_max", "True"),
    ("N-fraction", "N: 1000", "N: 10.5", SpecTypeError, "model.N", "10.5"),
    ("K-string", "K: 100", "K: many", SpecTypeError, "solver.K", "'many'"),
    (
        "model-scalar",
        "model:\n  a: 3.5\n  b: 5.0\n  N: 1000\n  sigma: 0.5\n  tail: false",
        "model: 5",
        SpecTypeError,
        "model",
        "5",
    ),
    (
        "solver-list",
        "solver:\n  grid: auto\n  K: 100",
        "solver: [auto]",
        SpecTypeError,
        "solver",
        "['auto']",
    ),
    (
        "ipopt-bool",
        "K: 100",
        "K: 100\n  ipopt: {warm_start_init_point: yes}",
        SpecTypeError,
        "solver.ipopt.warm_start_init_point",
        "True",
    ),
    ("name-int", "name: base", "name: 123", SpecTypeError, "name", "123"),
    # NaN and infinities
    ("a-nan", "a: 3.5", "a: .nan", SpecError, "model.a", "nan"),
    ("eta-inf", "eta_max: 1.0", "eta_max: .inf", SpecError, "training.eta_max", "inf"),
    ("sigma-neg-inf", "sigma: 0.5", "sigma: -.inf", SpecError, "model.sigma", "-inf"),
    ("T-inf", "T: 1000", "T: .inf", SpecTypeError, "training.T", "inf"),
    # out of range
    ("a-le-1", "a: 3.5", "a: 1.0", SpecError, "model.a", "1.0"),
    ("b-zero", "b: 5.0", "b: 0", SpecError, "model.b", "0"),
    ("T-zero", "T: 1000", "T: 0", SpecError, "training.T", "0"),
    ("eta-zero", "eta_max: 1.0", "eta_max: 0.0", SpecError, "training.eta_max", "0.0"),
    ("eta-neg", "eta_max: 1.0", "eta_max: -2", SpecError, "training.eta_max", "-2"),
    ("N-zero", "N: 1000", "N: 0", SpecError, "model.N", "0"),
    ("sigma-neg", "sigma: 0.5", "sigma: -0.1", SpecError, "model.sigma", "-0.1"),
    ("batch-small", "batch_size: 5", "batch_size: 0.5", SpecError, "training.batch_size", "0.5"),
    ("grid-bad", "grid: auto", "grid: fine", SpecError, "solver.grid", "'fine'"),
    ("K-zero", "K: 100", "K: 0", SpecError, "solver.K", "0"),
    ("ipopt-nan", "K: 100", "K: 100\n  ipopt: {tol: .nan}", ConfigError, "solver.ipopt.tol", "nan"),
    # missing sections and keys
    ("no-a", "  a: 3.5\n", "", ConfigError, "model.a", "<missing>"),
    ("no-b", "  b: 5.0\n", "", ConfigError, "model.b", "<missing>"),
    ("no-T", "  T: 1000\n", "", ConfigError, "training.T", "<missing>"),
    (
        "no-model",
        "model:\n  a: 3.5\n  b: 5.0\n  N: 1000\n  sigma: 0.5\n  tail: false\n",
        "",
        ConfigError,
        "model.a",
        "<missing>",
    ),
    (
        "no-training",
        "training:\n  T: 1000\n  batch_size: 5\n  eta_max: 1.0\n",
        "",
        ConfigError,
        "training.T",
        "<missing>",
    ),
    # schema version
    ("no-version", "schema_version: 1\n", "", ConfigError, "schema_version", "<missing>"),
    ("version-2", "schema_version: 1", "schema_version: 2", ConfigError, "schema_version", "2"),
    (
        "version-string",
        "schema_version: 1",
        'schema_version: "1"',
        SpecTypeError,
        "schema_version",
        "'1'",
    ),
    (
        "version-bool",
        "schema_version: 1",
        "schema_version: true",
        SpecTypeError,
        "schema_version",
        "True",
    ),
    # unknown keys
    ("model-foo", "  tail: false", "  tail: false\n  foo: 3", ConfigError, "model.foo", "3"),
    ("training-lr", "eta_max: 1.0", "eta_max: 1.0\n  lr: 0.1", ConfigError, "training.lr", "0.1"),
    ("solver-typo", "grid: auto", "gird: auto", ConfigError, "solver.gird", "'auto'"),
    (
        "top-typo",
        "baselines:",
        "basline: [cosine]\nbaselines:",
        ConfigError,
        "basline",
        "['cosine']",
    ),
    # baselines and name
    ("baseline-unknown", "cosine, wsd]", "cosin, wsd]", ConfigError, "baselines[3]", "'cosin'"),
    ("baseline-twice", "cosine, wsd]", "cosine, cosine]", ConfigError, "baselines[4]", "'cosine'"),
    (
        "baselines-string",
        "[constant, power_law, linear_decay, cosine, wsd]",
        "constant",
        SpecTypeError,
        "baselines",
        "'constant'",
    ),
    (
        "baselines-null",
        "[constant, power_law, linear_decay, cosine, wsd]",
        "",
        SpecTypeError,
        "baselines",
        "None",
    ),
    ("name-space", "name: base", "name: my run", ConfigError, "name", "'my run'"),
    ("name-dots", "name: base", "name: '..'", ConfigError, "name", "'..'"),
]


@pytest.mark.parametrize(
    ("old", "new", "exc", "field", "value"), [row[1:] for row in BAD], ids=[row[0] for row in BAD]
)
def test_bad_input_names_field_and_value(
    tmp_path: Path, old: str, new: str, exc: type[Exception], field: str, value: str
) -> None:
    with pytest.raises(exc) as info:
        _load_text(tmp_path, _edit(old, new))
    err = info.value
    assert isinstance(err, OptctlError)
    assert isinstance(err, ValueError | TypeError)
    assert isinstance(err, SpecError | SpecTypeError)
    assert err.field == field
    message = str(err)
    assert field in message
    assert value in message
    assert any(str(tmp_path) in note for note in getattr(err, "__notes__", []))


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, SpecError)
    assert issubclass(ConfigError, OptctlError)
    assert issubclass(ConfigError, ValueError)


# --- fixes offered -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "hint"),
    [
        ("tail: false", "tail: false\n  n: 10", "did you mean 'N'?"),
        ("tail: false", "tail: false\n  sigm: 1", "did you mean 'sigma'?"),
        ("grid: auto", "gird: auto", "did you mean 'grid'?"),
        ("model:", "modle: {}\nmodel:", "did you mean 'model'?"),
        ("tail: false", "tail: false\n  T: 10", "`T` belongs under `training:`"),
        ("cosine, wsd]", "cosin, wsd]", "did you mean 'cosine'?"),
    ],
)
def test_unknown_key_suggests_closest(tmp_path: Path, old: str, new: str, hint: str) -> None:
    with pytest.raises(ConfigError, match="allowed keys|choose from") as info:
        _load_text(tmp_path, _edit(old, new))
    assert hint in str(info.value)


def test_unknown_key_lists_allowed_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_dict(yaml.safe_load(_edit("tail: false", "tail: false\n  foo: 1")))
    for key in ("a", "b", "N", "sigma", "normalize_init", "tail"):
        assert key in str(info.value)


def test_schema_error_lists_supported_versions() -> None:
    with pytest.raises(ConfigError, match="supported versions: 1"):
        load_config_dict(yaml.safe_load(_edit("schema_version: 1", "schema_version: 7")))


# --- file-level errors -------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="no such file") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("model: {a: 3.5\n", "not valid YAML: line"),
        ("model:\n  a: 3.5\n   b: 5\n", "not valid YAML: line"),
        (BASE + "schema_version: 1\n", "duplicate key 'schema_version'"),
        (_edit("b: 5.0", "b: 5.0\n  a: 2.0"), "duplicate key 'a'"),
    ],
)
def test_yaml_syntax_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        _load_text(tmp_path, text)
    assert info.value.field == "path"
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("- 1\n- 2\n", "must hold a mapping"),
        ("just a string\n", "must hold a mapping"),
    ],
)
def test_not_a_mapping(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        _load_text(tmp_path, text)
    assert info.value.field == "config"


def test_load_config_dict_rejects_non_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config_dict([1, 2])  # type: ignore[arg-type]


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        _load_text(tmp_path, "!!python/object/apply:os.system ['true']\n")


# --- overrides and the dataclass ---------------------------------------------------------


def test_with_overrides_replaces_and_keeps() -> None:
    cfg = load_config(CONFIG_DIR / "hard_phase.yaml")
    new = with_overrides(cfg, T=10_000, grid="refined", name="hard_T1e4", a=None, baselines=["wsd"])
    assert new.problem == dataclasses.replace(cfg.problem, T=10_000)
    assert new.solver == dataclasses.replace(cfg.solver, grid="refined")
    assert (new.name, new.baselines) == ("hard_T1e4", ("wsd",))
    assert with_overrides(cfg) == cfg
    assert with_overrides(cfg, T=None) == cfg
    assert cfg.problem.T == 1000  # the original is untouched


@pytest.mark.parametrize(
    ("kwargs", "exc", "field"),
    [
        ({"T": 0}, SpecError, "training.T"),
        ({"a": "3"}, SpecTypeError, "model.a"),
        ({"grid": "fine"}, SpecError, "solver.grid"),
        ({"name": "a/b"}, ConfigError, "name"),
        ({"baselines": ["nope"]}, ConfigError, "baselines[0]"),
        ({"horizon": 5}, ConfigError, "horizon"),
    ],
)
def test_with_overrides_validates(
    kwargs: dict[str, object], exc: type[Exception], field: str
) -> None:
    cfg = load_config(CONFIG_DIR / "hard_phase.yaml")
    with pytest.raises(exc) as info:
        with_overrides(cfg, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field  # type: ignore[attr-defined]


def test_with_overrides_suggests_field() -> None:
    cfg = load_config(CONFIG_DIR / "hard_phase.yaml")
    with pytest.raises(ConfigError, match="did you mean 'eta_max'"):
        with_overrides(cfg, eta_mx=0.5)


def test_run_config_is_frozen_and_validates() -> None:
    cfg = load_config(CONFIG_DIR / "hard_phase.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]
    with pytest.raises(SpecTypeError, match="problem"):
        RunConfig(name="x", problem=cfg.problem.to_dict())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="name"):
        dataclasses.replace(cfg, name="")
    assert RunConfig(name="x", problem=cfg.problem, baselines=["wsd"]).baselines == ("wsd",)  # type: ignore[arg-type]


def test_source_is_not_compared(tmp_path: Path) -> None:
    cfg = load_config(CONFIG_DIR / "hard_phase.yaml")
    assert dataclasses.replace(cfg, source=None) == cfg


@pytest.mark.parametrize(("command", "config", "says"), [
    ("solve", "sweep_horizons.yaml", "is a sweep config (for optctl sweep), not a run config"),
    ("sweep", "easy_phase.yaml", "is a run config (for optctl solve), not a sweep config"),
    ("solve", "fit_pilot.yaml", "is a fit config"),
])
def test_a_config_of_another_kind_is_named_as_such(command: str, config: str, says: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from optctl.cli.main import main

    assert main([command, str(Path(__file__).parents[1] / "configs" / config), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err


@pytest.mark.parametrize("b, shown", [(1.0, "ln N"), (0.7, "N^0.3")])
def test_b_at_or_below_one_warns_with_field_and_value(b: float, shown: str) -> None:
    d = yaml.safe_load(BASE)
    d["model"]["b"] = b
    with pytest.warns(AssumptionWarning, match=rf"model\.b: b = {b:g} <= 1") as rec:
        cfg = load_config_dict(d)
    assert cfg.problem.b == b  # a warning, not an error: the solve stays exact for this N
    assert shown in str(rec[0].message)
    assert "outside the model's assumptions" in str(rec[0].message)


def test_b_above_one_does_not_warn() -> None:
    d = yaml.safe_load(BASE)
    d["model"]["b"] = 1.01
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumptionWarning)
        load_config_dict(d)
