"""A mapping typo is one file:line error before anything runs, on either side and in lookups,
checked against real databases (SQLite here; PostgreSQL through the same inspector)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cdc.config import load_config
from cdc.mapping_check import check_stores
from cdc_apply_helpers import create_legacy_schema, create_service_schema, write_config
from strangler.db import sqlite_url
from strangler.errors import OperatorError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    legacy, service = sqlite_url(tmp_path / "legacy.db"), sqlite_url(tmp_path / "service.db")
    create_legacy_schema(legacy)
    create_service_schema(service)
    return write_config(tmp_path, "walk", legacy, service)


@pytest.mark.parametrize("typo, found, anchor, says", [
    ("      name: title", "      nmae: title", "nmae: title",
     "tables[1].columns.nmae: legacy column 'nmae' is not in table 'products'"),
    ("      name: title", "      name: titel", "name: titel",
     "tables[1].columns.name: service column 'titel' is not in table 'products'"),
    ("  - legacy: products", "  - legacy: product", "- legacy: product",
     "tables[1].legacy: table 'product' does not exist in the legacy database"),
    ("match: legacy_category_id", "match: legacy_categoryid", "category_id:",
     "tables[1].columns.category_id: lookup categories.legacy_categoryid -> slug: column 'legacy_categoryid' is not in table "
     "'categories' of the service database"),
    ("to_legacy: [inventory.product_id,", "to_legacy: [inventry.product_id,", "- legacy: products",
     "tables[1].also_delete.to_legacy: inventry.product_id is not in the legacy database"),
    ("match: slug, take: id", "match: slug, take: ident", "category_id:",
     "tables[1].columns.category_id: lookup categories.slug -> ident: column 'ident' is not in table 'categories' of the "
     "legacy database"),
])
def test_each_typo_is_named_with_its_line(config_file: Path, typo: str, found: str, anchor: str,
                                          says: str) -> None:
    check_stores(load_config("walk", str(config_file)))        # the shipped mapping is fine
    text = config_file.read_text()
    assert typo in text
    config_file.write_text(text.replace(typo, found))
    line = next(n for n, t in enumerate(config_file.read_text().splitlines(), 1)
                if t.strip().startswith(anchor))
    with pytest.raises(OperatorError) as error:
        check_stores(load_config("walk", str(config_file)))
    assert str(error.value).startswith(f"{config_file}:{line}: {says}")


def test_the_command_refuses_before_creating_anything(config_file: Path) -> None:
    config_file.write_text(config_file.read_text().replace("      name: title", "      nmae: title"))
    log = config_file.parent / "cdc-log.db"                    # the embedded transport's file
    run = subprocess.run([sys.executable, "-m", "strangler", "cdc", "run", "walk", "--config",
                          str(config_file), "--seconds", "5"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "legacy column 'nmae' is not in table 'products'" in run.stderr
    assert not log.exists()
