"""The shop's deterministic seed data, as plain values: no database, no I/O.

Both the legacy shop and the extracted catalog service seed themselves from these
generators, so the two stores start with identical rows and shadow comparison has a
common ground truth. Every field of product `i` is a pure function of `i` (integer
mixing, no shared random state), so `iter_products(100)` is exactly the first 100
items of `iter_products(100_000)` and any single product can be rebuilt on its own
with `product(i)`.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TypedDict

DEFAULT_PRODUCTS = 200
CURRENCY = "EUR"
# Seeded rows were last "changed" at some second of 2025; fixed so re-seeding is reproducible.
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
_YEAR_SECONDS = 365 * 86400


class CategoryRow(TypedDict):
    id: int
    slug: str
    name: str


class ProductRow(TypedDict):
    id: int
    sku: str
    name: str
    description: str
    price: Decimal
    currency: str
    category: str  # category slug
    updated_at: datetime  # timezone-aware UTC, whole seconds
    stock: int


class CustomerRow(TypedDict):
    id: int
    email: str
    name: str


# (slug, name, nouns sold in it): twelve categories, ids 1..12 in this order.
_CATEGORIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("lighting", "Lighting", ("Desk Lamp", "Floor Lamp", "Pendant Light", "Wall Sconce", "Lantern")),
    ("seating", "Seating", ("Armchair", "Stool", "Bench", "Dining Chair", "Rocking Chair")),
    ("tables", "Tables", ("Coffee Table", "Side Table", "Desk", "Dining Table", "Console")),
    ("storage", "Storage", ("Bookcase", "Sideboard", "Shelf", "Chest", "Wardrobe")),
    ("textiles", "Textiles", ("Throw", "Cushion", "Rug", "Curtain", "Blanket")),
    ("kitchen", "Kitchen", ("Chopping Board", "Bread Bin", "Knife Block", "Spice Rack", "Teapot")),
    ("tableware", "Tableware", ("Bowl", "Plate", "Mug", "Serving Tray", "Carafe")),
    ("bathroom", "Bathroom", ("Towel Rail", "Soap Dish", "Mirror", "Bath Mat", "Caddy")),
    ("garden", "Garden", ("Planter", "Watering Can", "Bird Feeder", "Deck Chair", "Parasol")),
    ("office", "Office", ("Pen Holder", "Letter Tray", "Monitor Stand", "Notebook", "Desk Organiser")),
    ("decor", "Decor", ("Vase", "Candle Holder", "Picture Frame", "Clock", "Sculpture")),
    ("kids", "Kids", ("Toy Box", "Night Light", "Play Mat", "Step Stool", "Growth Chart")),
)
_ADJECTIVES = ("Classic", "Nordic", "Rustic", "Modern", "Compact", "Grand", "Vintage", "Minimal",
               "Sturdy", "Elegant", "Cosy", "Bold")
_MATERIALS = ("Walnut", "Oak", "Brass", "Linen", "Ceramic", "Steel", "Bamboo", "Marble", "Wool",
              "Glass", "Cork", "Copper")
_FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")
_LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")


def _mix(i: int, salt: int) -> int:
    """A well-spread 32-bit value from (i, salt): the murmur3 finaliser, so fields look random."""
    h = (i * 0x9E3779B1 + salt * 0x85EBCA77) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def iter_categories() -> Iterator[CategoryRow]:
    """The twelve categories, ids 1..12, in id order."""
    for index, (slug, name, _nouns) in enumerate(_CATEGORIES, start=1):
        yield CategoryRow(id=index, slug=slug, name=name)


def product(i: int) -> ProductRow:
    """Product number `i` (1-based): id `i`, SKU `SKU-00000i`, every other field derived from `i`."""
    if i < 1:
        raise ValueError(f"product ids start at 1, got {i}")
    slug, category_name, nouns = _CATEGORIES[_mix(i, 1) % len(_CATEGORIES)]
    name = (f"{_ADJECTIVES[_mix(i, 2) % len(_ADJECTIVES)]} "
            f"{_MATERIALS[_mix(i, 3) % len(_MATERIALS)]} {nouns[_mix(i, 4) % len(nouns)]}")
    cents = 199 + _mix(i, 5) % 99_800  # 1.99 .. 999.98
    # About one product in twenty is sold out: checkout has real shortages to hit.
    stock = 0 if _mix(i, 6) % 20 == 0 else 1 + _mix(i, 7) % 500
    return ProductRow(
        id=i,
        sku=f"SKU-{i:06d}",
        name=name,
        description=f"{name}, from our {category_name.lower()} range. Item {i}.",
        price=Decimal(cents).scaleb(-2),
        currency=CURRENCY,
        category=slug,
        updated_at=EPOCH - timedelta(seconds=1 + _mix(i, 8) % _YEAR_SECONDS),
        stock=stock,
    )


def iter_products(n: int = DEFAULT_PRODUCTS) -> Iterator[ProductRow]:
    """Products 1..n in id order."""
    if n < 0:
        raise ValueError(f"the number of products must be >= 0, got {n}")
    for i in range(1, n + 1):
        yield product(i)


def iter_customers(n: int = 5) -> Iterator[CustomerRow]:
    """A few customers with example.org addresses (never real people's data)."""
    for i in range(1, n + 1):
        first = _FIRST_NAMES[(i - 1) % len(_FIRST_NAMES)]
        last = _LAST_NAMES[_mix(i, 9) % len(_LAST_NAMES)]
        yield CustomerRow(id=i, email=f"{first.lower()}.{last.lower()}.{i}@example.org",
                          name=f"{first} {last}")
