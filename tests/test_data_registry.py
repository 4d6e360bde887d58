"""The dataset registry: names, the data root, layout checks and availability."""

import pickle

import numpy as np
import pytest

from sbir_core.data import LOADERS, data_root, load_dataset
from sbir_core.data.base import DataError
from sbir_core.data.registry import LAYOUT_CHECKS, available, check_layout

REAL = ["shoev2", "chairv2", "shoes304", "sketchy", "tuberlin", "pacs", "domains", "quickdraw"]


def test_required_names_are_registered_with_layout_checks():
    for name in REAL:
        assert name in LOADERS and name in LAYOUT_CHECKS


def test_data_root_from_argument_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("SBIR_DATA", raising=False)
    with pytest.raises(DataError, match="SBIR_DATA"):
        data_root()
    assert not available("chairv2")
    monkeypatch.setenv("SBIR_DATA", str(tmp_path))
    assert data_root() == tmp_path and data_root("/x") == type(tmp_path)("/x")


@pytest.mark.parametrize("name", REAL)
def test_empty_root_every_dataset_names_what_is_missing(tmp_path, name):
    assert available(name, tmp_path) is False
    with pytest.raises(DataError, match="Expected layout") as info:
        check_layout(name, tmp_path)
    with pytest.raises(DataError, match="Expected layout"):
        load_dataset(name, tmp_path)
    assert str(tmp_path) in str(info.value)


def test_available_after_the_files_appear(tmp_path):
    (tmp_path / "ChairV2").mkdir()
    assert not available("chairv2", tmp_path)
    (tmp_path / "ChairV2" / "ChairV2_Coordinate").write_bytes(pickle.dumps({"/train/a_1": np.array([[1.0, 2.0, 1.0]])}))
    assert available("chairv2", tmp_path)
    assert check_layout("chairv2", tmp_path).name == "ChairV2_Coordinate"
    assert len(load_dataset("chairv2", tmp_path)) == 1


def test_unknown_names_are_errors(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'nope'.*chairv2"):
        load_dataset("nope", tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        available("nope", tmp_path)


def test_a_file_as_root_is_a_data_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        load_dataset("shoes304", f)


def test_real_root_availability(data_root):
    found = {name: available(name, data_root) for name in REAL}
    for name in ("chairv2", "shoes304", "pacs", "quickdraw"):
        if (data_root / name).exists():
            assert found[name], f"{name} is under {data_root} but its layout check fails"


def test_every_real_dataset_has_a_layout_check():
    from sbir_core.data.registry import LAYOUT_CHECKS, LOADERS

    assert set(LOADERS) - set(LAYOUT_CHECKS) == {"style_world"}
