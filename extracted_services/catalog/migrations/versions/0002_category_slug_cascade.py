"""Products follow a category's slug when it changes (ON UPDATE CASCADE).

Legacy keys categories by number and may rename a slug at any time; CDC then moves the service's
category row to its new slug in place, and without the cascade every product of that category
blocked the move (the change went to the dead-letter table and the stores drifted apart).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NAME = "fk_products_category_slug"
# 0001 left the constraint unnamed: PostgreSQL named it itself; SQLite's is named here.
UNNAMED = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def _replace(onupdate: str | None) -> None:
    with op.batch_alter_table("products", naming_convention=UNNAMED) as batch:
        batch.drop_constraint(_current_name(), type_="foreignkey")
        batch.create_foreign_key(NAME, "categories", ["category_slug"], ["slug"],
                                 onupdate=onupdate)


def _current_name() -> str:
    import sqlalchemy as sa
    for fk in sa.inspect(op.get_bind()).get_foreign_keys("products"):
        if fk["constrained_columns"] == ["category_slug"]:
            return fk["name"] or UNNAMED["fk"] % {"table_name": "products",
                                                  "column_0_name": "category_slug"}
    raise RuntimeError("products.category_slug has no foreign key to replace")


def upgrade() -> None:
    _replace("CASCADE")


def downgrade() -> None:
    _replace(None)
