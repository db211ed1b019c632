"""Initial catalog schema: categories by slug, products priced in integer cents.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("slug", sa.String(64), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("legacy_category_id", sa.Integer, nullable=True),
        sa.UniqueConstraint("legacy_category_id", name="uq_categories_legacy_category_id"),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("price_cents", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("category_slug", sa.String(64), sa.ForeignKey("categories.slug"),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("price_cents >= 0", name="ck_products_price_cents"),
        sa.UniqueConstraint("sku", name="uq_products_sku"),
    )
    op.create_index("ix_products_category_slug", "products", ["category_slug"])


def downgrade() -> None:
    op.drop_index("ix_products_category_slug", "products")
    op.drop_table("products")
    op.drop_table("categories")
