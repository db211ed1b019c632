"""The catalog service's own schema: the "after" picture, different from legacy on purpose.

Prices are integer cents plus a currency code, categories are keyed by slug. Product ids are
the legacy ids, so rows correspond 1:1 and the CDC can map between the stores.
`legacy_category_id` lets the CDC translate legacy `products.category_id` to a slug; it is not
part of the public API.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (CHAR, BigInteger, CheckConstraint, DateTime, ForeignKey, Integer, String,
                        Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-assigns ids to an INTEGER PRIMARY KEY (the rowid alias), not to BIGINT.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class Category(Base):
    __tablename__ = "categories"
    __table_args__ = (
        UniqueConstraint("legacy_category_id", name="uq_categories_legacy_category_id"),
    )

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    legacy_category_id: Mapped[int | None] = mapped_column(Integer)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price_cents >= 0", name="ck_products_price_cents"),
        UniqueConstraint("sku", name="uq_products_sku"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # BIGINT, not INTEGER: legacy's NUMERIC(10,2) reaches 99,999,999.99, past INTEGER cents.
    price_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(CHAR(3))
    # A slug renamed at the source (legacy keys categories by number) carries its products.
    category_slug: Mapped[str] = mapped_column(
        ForeignKey("categories.slug", name="fk_products_category_slug", onupdate="CASCADE"),
        index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
