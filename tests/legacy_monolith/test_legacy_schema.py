"""Migrations and seeding on both backends: idempotent, model-exact, deterministic."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic import command
from sqlalchemy import insert, inspect, select, text

from legacy_monolith.migrate import alembic_config, current_revision, upgrade
from legacy_monolith.models import Base, Category, Customer, Inventory, Product
from legacy_monolith.seed import seed
from legacy_monolith.seed_data import iter_products
from strangler.db import make_engine
from strangler.errors import OperatorError


def test_migrations_run_twice_and_match_the_models(fresh_database_url):
    url = fresh_database_url
    upgrade(url)
    upgrade(url)  # start-up runs it every time: must be a no-op
    assert current_revision(url) == "0001"
    command.check(alembic_config(url))  # raises if the models and migrations disagree
    engine = make_engine(url)
    try:
        inspector = inspect(engine)
        assert set(Base.metadata.tables) <= set(inspector.get_table_names())
        for table in Base.metadata.tables:  # CDC keys its events by primary key
            assert inspector.get_pk_constraint(table)["constrained_columns"], table
    finally:
        engine.dispose()


def _rows_digest(engine) -> str:
    digest = hashlib.sha256()
    with engine.connect() as connection:
        for model in (Category, Product, Inventory, Customer):
            table = model.__table__
            for row in connection.execute(select(table).order_by(*table.primary_key.columns)):
                digest.update(repr(tuple(str(value) for value in row)).encode())
    return digest.hexdigest()


def test_seed_is_deterministic_and_identical_on_both_backends(tmp_path, pg_url):
    urls = [f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db", pg_url]
    digests = []
    for url in urls:
        upgrade(url)
        engine = make_engine(url)
        try:
            seed(engine, 300)
            digests.append(_rows_digest(engine))
        finally:
            engine.dispose()
    assert len(set(digests)) == 1
    engine = make_engine(urls[0])
    try:
        with engine.connect() as connection:
            assert connection.scalar(select(Product.price).where(Product.id == 300)) == \
                list(iter_products(300))[-1]["price"]
    finally:
        engine.dispose()


def test_seed_refuses_a_seeded_database_and_sequences_step_past_seeded_ids(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        seed(engine, 25)
        with pytest.raises(OperatorError, match="already holds 25 products"):
            seed(engine, 25)
        with engine.begin() as connection:
            new_category = connection.execute(insert(Category).values(name="New", slug="new")
                                              .returning(Category.id)).scalar_one()
            new_customer = connection.execute(
                insert(Customer).values(email="n@example.org", name="N", created_at=text("CURRENT_TIMESTAMP"))
                .returning(Customer.id)).scalar_one()
            new_product = connection.execute(
                insert(Product).values(sku="N-1", name="N", description="", price=1, currency="EUR",
                                       category_id=new_category, updated_at=text("CURRENT_TIMESTAMP"))
                .returning(Product.id)).scalar_one()
        assert (new_category, new_customer, new_product) == (13, 6, 26)
    finally:
        engine.dispose()


def test_concurrent_start_ups_migrate_once(fresh_database_url):
    """Every shop process runs `upgrade head` at start-up; several starting at once must not race
    (separate processes meet the database locks, threads of one process the in-process lock)."""
    url = fresh_database_url
    script = f"from legacy_monolith.migrate import upgrade; upgrade({url!r})"
    processes = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(upgrade, url) for _ in range(2)]:
            future.result()
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert current_revision(url) == "0001"
    command.check(alembic_config(url))
