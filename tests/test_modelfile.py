"""Model files and checkpoints: damaged or hostile files fail with one line naming the file and field.

The checksum is verified before HDF5 parses a byte; then every field is checked against the format
before anything is built, so no file makes the process crash, swell or return garbage.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import spikeglm as sg
from spikeglm import modelfile
from spikeglm.files import CHECKSUM_HEADER_BYTES, add_checksum, verify_checksum

#: Loads every file named on its command line, printing per file [path, "OK" or error type, message].
_LOADER = """
import json, sys
import spikeglm as sg
for path in sys.argv[1:]:
    try:
        sg.POGLM.load(path)
        print(json.dumps([path, "OK", ""]), flush=True)
    except Exception as error:
        print(json.dumps([path, type(error).__name__, str(error)]), flush=True)
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A fitted model, its file and the checkpoint file of the same fit."""
    folder = tmp_path_factory.mktemp("files")
    counts = sg.SpikeCounts.from_array(np.random.default_rng(0).poisson(0.3, (2, 60, 3)), bin_size="5 ms")
    model = sg.POGLM(n_hidden=1, epochs=2, seed=0).fit(counts)
    model.save(folder / "model.h5")
    checkpoint = folder / "fit.ckpt.h5"
    sg.POGLM(n_hidden=1, epochs=2, seed=0).fit(counts, checkpoint=checkpoint, checkpoint_every=1)
    return model, folder / "model.h5", checkpoint


def _damaged_copies(source: Path, folder: Path, rng: np.random.Generator, count: int) -> list[Path]:
    """Copies of ``source`` with 1-8 bytes flipped (in the checksum, its padding, the HDF5 part) or cut."""
    data = source.read_bytes()
    regions = [(0, 81), (81, CHECKSUM_HEADER_BYTES), (CHECKSUM_HEADER_BYTES, len(data))]
    copies = []
    for number in range(count):
        damaged = bytearray(data)
        if number % 4 == 3:
            damaged = damaged[: rng.integers(0, len(data))]
        else:
            low, high = regions[number % 4]
            for offset in low + rng.choice(high - low, size=rng.integers(1, 9), replace=False):
                damaged[offset] ^= int(rng.integers(1, 256))
        copy = folder / f"{source.stem}-{number}.h5"
        copy.write_bytes(bytes(damaged))
        copies.append(copy)
    return copies


def _load_in_subprocess(paths: list[Path]) -> dict[str, tuple[str, str]]:
    result = subprocess.run(
        [sys.executable, "-c", _LOADER, *map(str, paths)], capture_output=True, text=True, timeout=300
    )
    # A negative return code is a death by signal (e.g. SIGSEGV inside HDF5).
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {path: (kind, message) for path, kind, message in rows}


def test_damaged_files_fail_with_one_line_naming_them(files, tmp_path):
    _, model_path, checkpoint = files
    rng = np.random.default_rng(20240501)
    damaged = [
        copy for source in (model_path, checkpoint) for copy in _damaged_copies(source, tmp_path, rng, 120)
    ]
    results = _load_in_subprocess([model_path, checkpoint, *damaged])
    assert results[str(model_path)] == ("OK", "")
    assert results[str(checkpoint)] == ("OK", "")
    for copy in damaged:
        kind, message = results[str(copy)]
        assert kind == "ValueError", (copy, kind, message)
        assert message.startswith(f"{copy}: damaged or altered"), message
        assert "\n" not in message


def _edited(source: Path, target: Path, edit) -> Path:
    """A copy of ``source`` changed by ``edit(h5py.File)``, its checksum made valid again (a hostile file)."""
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as f:
        edit(f)
    add_checksum(target)
    verify_checksum(target)
    return target


def _replace(name: str, make):
    def edit(f: h5py.File) -> None:
        del f[name]
        make(f, name)

    return edit


def _with(name: str, values):
    return _replace(name, lambda f, key: f.create_dataset(key, data=values))


def _config(change):
    def edit(f: h5py.File) -> None:
        config = json.loads(f.attrs["config"])
        change(config)
        f.attrs["config"] = json.dumps(config)

    return edit


def _set_attribute(name: str, value, owner: str = "/"):
    return lambda f: f[owner].attrs.__setitem__(name, value)


def _huge_declared_weights(f: h5py.File) -> None:
    # A model of 10,000 neurons whose 400 MB weight dataset is declared but never written.
    _config(lambda c: c.update(n_visible=9999, unit_ids=[str(i) for i in range(9999)]))(f)
    _replace("network/weight", lambda f, key: f.create_dataset(key, shape=(10000, 10000, 1), dtype="f4"))(f)


SCHEMA_CASES = {
    "wrong-shape": (_with("network/weight", np.zeros((3, 3, 1), "f4")), r"dataset /network/weight has shape"),
    "missing-dataset": (lambda f: f.__delitem__("posterior/past"), r"dataset /posterior/past is missing"),
    "extra-dataset": (
        lambda f: f.create_dataset("network/extra", data=[1.0]),
        r"group /network holds an unexpected entry 'extra'",
    ),
    "non-json-config": (_set_attribute("config", "{n_visible: 3"), r"attribute 'config' is not valid JSON"),
    "config-not-a-dict": (_set_attribute("config", "[1, 2]"), r"attribute 'config' must be a JSON object"),
    "config-missing": (lambda f: f.attrs.__delitem__("config"), r"attribute 'config' is missing"),
    "missing-unit-ids": (_config(lambda c: c.pop("unit_ids")), r"config lacks the field 'unit_ids'"),
    "unit-ids-not-strings": (_config(lambda c: c.update(unit_ids=[0, 1, 2])), r"config field 'unit_ids'"),
    "unit-ids-count": (_config(lambda c: c.update(unit_ids=["a"])), r"config field 'unit_ids' has 1 entries"),
    "n-hidden-as-string": (
        _config(lambda c: c.update(n_hidden="1")),
        r"config field 'n_hidden' must be a whole",
    ),
    "n-visible-bool": (
        _config(lambda c: c.update(n_visible=True)),
        r"config field 'n_visible' must be a whole",
    ),
    "unknown-link": (_config(lambda c: c.update(link="tanh")), r"config field 'link' must be one of"),
    "link-as-list": (_config(lambda c: c.update(link=["exp"])), r"config field 'link' must be one of"),
    "fit-options-list": (_config(lambda c: c.update(fit_options=[])), r"config field 'fit_options'"),
    "unknown-se-source": (
        _config(lambda c: c.update(strength_se_source={"method": "guess"})),
        r"config field 'strength_se_source' must be null, \{\"method\": \"fisher\"\}",
    ),
    "group-lasso-errors-given-a-path": (
        _config(
            lambda c: c.update(
                strength_se_source={
                    "method": "fisher-latent-penalised",
                    "penalty": "group-lasso",
                    "penalty_strength": 1e-3,
                }
            )
        ),
        r"config field 'strength_se_source'",
    ),
    "negative-entry-strength": (
        _config(lambda c: c.update(entry_strength=[[0.0, -1.0, 0.0, 0.0]] * 4)),
        r"config field 'entry_strength' must be null or a square table of numbers >= 0",
    ),
    "ragged-entry-strength": (
        _config(lambda c: c.update(entry_strength=[[0.0] * 4, [0.0] * 3, [0.0] * 4, [0.0] * 4])),
        r"config field 'entry_strength' must be null or a square table",
    ),
    "entry-strength-of-another-model": (
        _config(lambda c: c.update(entry_strength=[[0.0] * 3] * 3)),
        r"config field 'entry_strength' has shape \(3, 3\), not that of the model",
    ),
    "one-refit-bootstrap": (
        _config(lambda c: c.update(strength_se_source={"method": "bootstrap", "n_boot": 1, "seed": 0})),
        r"config field 'strength_se_source'",
    ),
    "bad-basis": (_config(lambda c: c["basis"].update(decay=-1)), r"config field 'basis': decay must be > 0"),
    "basis-argument-clash": (_config(lambda c: c["basis"].update(name_or_basis=1)), r"config field 'basis'"),
    "huge-window": (
        _config(lambda c: c.update(basis={"name": "raw", "window": 10**6})),
        r"config field 'basis' declares",
    ),
    "huge-n-visible": (
        _config(lambda c: c.update(n_visible=10**9)),
        r"config fields 'n_visible' and 'n_hidden'",
    ),
    "huge-n-hidden": (
        _config(lambda c: c.update(n_hidden=10**400)),
        r"config fields 'n_visible' and 'n_hidden'",
    ),
    "declared-not-stored": (
        _huge_declared_weights,
        r"dataset /network/weight declares 400000000 bytes but stores 0",
    ),
    "string-parameters": (
        _with("network/bias", np.array(["a", "b", "c", "d"], dtype=object)),
        r"dataset /network/bias must hold floats",
    ),
    "integer-parameters": (
        _with("network/bias", np.zeros(4, np.int64)),
        r"dataset /network/bias must hold floats",
    ),
    "nan-weights": (
        lambda f: f["network/weight"].__setitem__((0, 0, 0), np.nan),
        r"dataset /network/weight holds non-finite values",
    ),
    "infinite-posterior": (
        lambda f: f["posterior/bias"].__setitem__(0, np.inf),
        r"dataset /posterior/bias holds non-finite values",
    ),
    "compressed": (
        _replace("network/bias", lambda f, key: f.create_dataset(key, data=np.zeros(4), compression="gzip")),
        r"dataset /network/bias is not stored plainly",
    ),
    "soft-link": (
        _replace("network/bias", lambda f, key: f.__setitem__(key, h5py.SoftLink("/posterior/bias"))),
        r"/network/bias must be a dataset stored in the file itself, not a link",
    ),
    "group-for-dataset": (
        _replace("network/bias", lambda f, key: f.create_group(key)),
        r"/network/bias must be a dataset, not a group",
    ),
    "history-lengths": (_with("history/seconds", np.zeros(5)), r"dataset /history/seconds has shape \(5,\)"),
    "history-2d": (
        _with("history/objective", np.zeros((2, 2))),
        r"dataset /history/objective must be a 1-D array",
    ),
    "not-a-model": (lambda f: f.attrs.__delitem__("format"), r"not a spikeglm model file"),
    "newer-format": (
        _set_attribute("format_version", modelfile.FORMAT_VERSION + 1),
        rf"format version {modelfile.FORMAT_VERSION + 1} is newer than this spikeglm reads",
    ),
    "version-1-with-checksum": (
        _set_attribute("format_version", 1),
        r"damaged or altered .*format version 1",
    ),
    "version-as-text": (_set_attribute("format_version", "2"), r"attribute 'format_version' must be a whole"),
    "config-array": (
        _set_attribute("config", np.array(["{}", "{}"], dtype=object)),
        r"attribute 'config' must be a single value",
    ),
}


TRAINING_CASES = {
    "nan-optimizer-state": (
        lambda f: f["training/optimizer/0/exp_avg"].__setitem__((0, 0, 0), np.nan),
        r"dataset /training/optimizer/0/exp_avg holds non-finite values",
    ),
    "optimizer-state-shape": (
        _with("training/optimizer/1/exp_avg_sq", np.zeros(3, "f4")),
        r"dataset /training/optimizer/1/exp_avg_sq has shape \(3,\); expected \(4,\)",
    ),
    "optimizer-state-missing": (
        lambda f: f.__delitem__("training/optimizer/2/step"),
        r"dataset /training/optimizer/2/step is missing",
    ),
    "optimizer-extra-parameter": (
        lambda f: f.create_dataset("training/optimizer/9/step", data=1.0),
        r"group /training/optimizer holds an unexpected entry '9'",
    ),
    "negative-epochs": (_set_attribute("epochs_done", -1, "training"), r"training state field 'epochs_done'"),
    "param-groups-not-json": (
        _set_attribute("param_groups", "[{", "training"),
        r"attribute 'param_groups' of /training is not valid JSON",
    ),
    "param-groups-numbering": (
        _set_attribute("param_groups", '[{"params": [0, 1]}]', "training"),
        r"attribute 'param_groups' of /training must be a list of parameter groups",
    ),
    "steps-done-text": (
        _set_attribute("extras", '{"steps_done": "3"}', "training"),
        r"training state field 'steps_done' must be a whole number",
    ),
    "partial-nan": (
        _set_attribute("extras", '{"partial": {"seconds": NaN}}', "training"),
        r"training state field 'partial'",
    ),
    "partial-groups-text": (
        _set_attribute("extras", '{"partial": {"groups": [1.5, "2"]}}', "training"),
        r"training state field 'partial'",
    ),
    "partial-last-groups-nan": (
        _set_attribute("extras", '{"partial": {"last_groups": [1.5, NaN]}}', "training"),
        r"training state field 'partial'",
    ),
}


HOSTILE = [(name, "model", *case) for name, case in SCHEMA_CASES.items()]
HOSTILE += [(name, "checkpoint", *case) for name, case in TRAINING_CASES.items()]


@pytest.mark.parametrize(("name", "kind", "edit", "expected"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_files_are_refused_naming_the_field(files, tmp_path, name, kind, edit, expected):
    _, model_path, checkpoint = files
    if kind == "model":
        path = _edited(model_path, tmp_path / "hostile.h5", edit)
        read = sg.POGLM.load
    else:
        path = _edited(checkpoint, tmp_path / "hostile.ckpt.h5", edit)
        read = modelfile.read_training_state
    with pytest.raises(ValueError) as refused:
        read(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, name
    assert re.search(expected, message), message


def test_training_state_keeps_further_keys(files, tmp_path):
    model, _, checkpoint = files
    saved = modelfile.read_training_state(checkpoint)
    extras = {
        "steps_done": 3,
        "partial": {"objective_sum": -1.5, "seconds": 0.25},
        "identity": {"data": [2, 60]},
    }
    path = tmp_path / "state.h5"
    model._write(
        path, overwrite=False, training={"epochs_done": 1, "optimizer": saved["optimizer"], **extras}
    )
    read = modelfile.read_training_state(path)
    assert {key: read[key] for key in ("epochs_done", *extras)} == {"epochs_done": 1, **extras}
    assert read["optimizer"]["state"].keys() == saved["optimizer"]["state"].keys()
    # A checkpoint of an earlier release records none of them.
    older = _edited(path, tmp_path / "older.h5", lambda f: f["training"].attrs.__delitem__("extras"))
    read = modelfile.read_training_state(older)
    assert (read["steps_done"], read["partial"], read["identity"]) == (0, None, None)


def test_a_file_of_format_version_1_still_loads(files, tmp_path):
    model, model_path, _ = files
    old = tmp_path / "v1.h5"
    with h5py.File(model_path, "r") as new, h5py.File(old, "w") as f:  # no userblock, as format 1 had
        for name in new:
            new.copy(new[name], f)
        f.attrs.update(new.attrs)
        f.attrs["format_version"] = 1
    assert old.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    loaded = sg.POGLM.load(old)
    np.testing.assert_array_equal(loaded.connectivity().weights, model.connectivity().weights)
    assert loaded.unit_ids_ == model.unit_ids_ and loaded.fit_options_ == model.fit_options_
    # It has no checksum, but every field is checked all the same.
    with h5py.File(old, "r+") as f:
        f["posterior/past"][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"v1\.h5: dataset /posterior/past holds non-finite values"):
        sg.POGLM.load(old)
    # A later version needs its checksum header.
    with h5py.File(old, "r+") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(ValueError, match=r"v1\.h5: damaged or altered \(the file lacks the checksum header"):
        sg.POGLM.load(old)


def test_a_file_of_format_version_2_loads_without_latent_factors(files, tmp_path):
    model, model_path, _ = files

    def as_version_2(f: h5py.File) -> None:
        f.attrs["format_version"] = 2
        _config(lambda c: [c.pop("n_latent"), c.pop("latent_tau")])(f)

    older = _edited(model_path, tmp_path / "v2.h5", as_version_2)
    loaded = sg.POGLM.load(older)
    assert loaded.n_latent == 0 and loaded.network_.loading is None
    np.testing.assert_array_equal(loaded.connectivity().weights, model.connectivity().weights)


def test_latent_factors_are_checked_like_every_field(files, tmp_path):
    _, model_path, _ = files
    for value, wanted in ((-1, "a whole number >= 0"), (1.5, "a whole number >= 0"), (10**9, "exceed")):
        edited = _edited(model_path, tmp_path / "bad.h5", _config(lambda c, v=value: c.update(n_latent=v)))
        with pytest.raises(ValueError, match=rf"bad\.h5: config field 'n_latent' .*{wanted}"):
            sg.POGLM.load(edited)
    edited = _edited(model_path, tmp_path / "tau.h5", _config(lambda c: c.update(latent_tau=0)))
    with pytest.raises(ValueError, match=r"tau\.h5: config field 'latent_tau' must be a number > 0"):
        sg.POGLM.load(edited)
    # A file that declares a factor its datasets lack.
    edited = _edited(model_path, tmp_path / "lacks.h5", _config(lambda c: c.update(n_latent=1)))
    with pytest.raises(ValueError, match=r"lacks\.h5: dataset /network/loading is missing"):
        sg.POGLM.load(edited)


def test_an_own_history_basis_round_trips_and_its_fixed_zeros_are_checked(tmp_path):
    """A GLM with an own-history basis loads as it was saved; a file that gives couplings between
    distinct neurons weights on the own-history functions (which the model keeps at zero) is refused."""
    counts = sg.SpikeCounts.from_array(np.random.default_rng(0).poisson(0.3, (4, 80, 3)), bin_size="5 ms")
    model = sg.POGLM(n_hidden=0, self_basis="raised-cosine", self_window=8).fit(counts)
    model.save(tmp_path / "own.h5")
    loaded = sg.POGLM.load(tmp_path / "own.h5")
    assert loaded.checked_settings().basis == model.checked_settings().basis
    np.testing.assert_array_equal(loaded.connectivity().weights, model.connectivity().weights)
    weight = model.network_.weight.detach().numpy().copy()
    weight[0, 1, 2] = 0.5  # neuron 1's spikes on neuron 0 through an own-history function
    edited = _edited(tmp_path / "own.h5", tmp_path / "forged.h5", _with("network/weight", weight))
    with pytest.raises(
        ValueError, match=r"forged\.h5: dataset network/weight gives couplings between distinct"
    ):
        sg.POGLM.load(edited)
    conn = model.connectivity()
    with pytest.raises(ValueError, match=r"conn\.weights gives couplings between distinct neurons weights"):
        sg.POGLM.from_connectivity(
            sg.Connectivity(weight, conn.basis_matrix, conn.bias, metadata=conn.metadata)
        )


def test_checksum_functions(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(CHECKSUM_HEADER_BYTES) + b"payload" * 1000)
    add_checksum(path)
    verify_checksum(path)
    assert path.read_bytes().startswith(b"spikeglm-sha256 ")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"data\.bin: damaged or altered \(checksum mismatch\)"):
        verify_checksum(path)
    path.write_bytes(b"id,count\n1,2\n")
    with pytest.raises(ValueError, match=r"data\.bin: damaged or altered, or not a spikeglm file"):
        verify_checksum(path)
    with pytest.raises(ValueError, match="a checksum header takes 81 bytes; 64 are reserved"):
        add_checksum(path, header_bytes=64)


def test_cli_export_of_a_damaged_model_fails_cleanly(files, tmp_path):
    _, model_path, _ = files
    damaged = tmp_path / "damaged.h5"
    data = bytearray(model_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out.csv"
    result = subprocess.run(
        [sys.executable, "-m", "spikeglm", "export", str(damaged), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"spikeglm: error: {damaged}: damaged or altered (checksum mismatch)")
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.h5"]
