"""The service's own schema: alembic owns it, it matches the models, and it is the "after" shape."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError, OperationalError

from extracted_services.catalog import migrate, seed
from extracted_services.catalog.models import Base
from legacy_monolith import seed_data
from strangler.db import make_engine, sqlite_url


def test_migrations_run_twice_and_match_the_models(database_url):
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        migrate.upgrade(engine)  # idempotent: start-up runs it every time
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": "catalog_alembic_version"})
            drift = compare_metadata(context, Base.metadata)
        assert drift == []
        schema = inspect(engine)
        for table in ("categories", "products", "catalog_alembic_version"):
            assert schema.get_pk_constraint(table)["constrained_columns"], table
        # Deliberately not legacy's shape: cents and a slug key, no NUMERIC price.
        columns = {c["name"] for c in schema.get_columns("products")}
        assert {"price_cents", "currency", "category_slug", "title"} <= columns
        assert "price" not in columns and "category_id" not in columns
        assert schema.get_pk_constraint("categories")["constrained_columns"] == ["slug"]
    finally:
        engine.dispose()


def test_seed_fills_only_an_empty_store_and_keeps_legacy_category_ids(database_url):
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        assert seed.seed(engine, 30) == 30
        assert seed.seed(engine, 30) == 0
        with engine.connect() as conn:
            ids = dict(conn.exec_driver_sql(
                "SELECT slug, legacy_category_id FROM categories").all())
            cents = conn.exec_driver_sql("SELECT price_cents FROM products WHERE id = 1").scalar()
        assert ids == {c["slug"]: c["id"] for c in seed_data.iter_categories()}
        assert cents == int(seed_data.product(1)["price"] * 100)
    finally:
        engine.dispose()


def test_pointed_at_the_legacy_database_it_fails_loudly(tmp_path):
    """Both apps' first revision is "0001": a shared version table would skip the schema."""
    from legacy_monolith.migrate import upgrade as legacy_upgrade

    url = sqlite_url(tmp_path / "legacy.db")
    legacy_upgrade(url)
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        with pytest.raises(OperationalError, match="already exists"):
            migrate.upgrade(engine)
        assert set(inspect(engine).get_table_names()) == tables  # nothing half-created
    finally:
        engine.dispose()


def test_a_renamed_category_slug_carries_its_products(database_url):
    """What CDC does when legacy renames a slug: the category row moves, its products follow.
    Upgraded from 0001 with data in it, as a live service would be."""
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine, "0001")
        assert seed.seed(engine, 20) == 20
        migrate.upgrade(engine)
        with engine.begin() as conn:
            slug, count = conn.exec_driver_sql(
                "SELECT category_slug, count(*) FROM products GROUP BY category_slug "
                "ORDER BY category_slug LIMIT 1").one()
            conn.exec_driver_sql(f"UPDATE categories SET slug = 'renamed' WHERE slug = '{slug}'")
        with engine.connect() as conn:
            moved = conn.exec_driver_sql(
                "SELECT count(*) FROM products WHERE category_slug = 'renamed'").scalar()
            left = conn.exec_driver_sql(
                f"SELECT count(*) FROM products WHERE category_slug = '{slug}'").scalar()
        assert (moved, left) == (count, 0)
        with engine.begin() as conn:             # and a slug nobody has is still refused
            with pytest.raises(IntegrityError):
                conn.exec_driver_sql("UPDATE products SET category_slug = 'nowhere' WHERE id = 1")
    finally:
        engine.dispose()
