"""Server-rendered HTML pages, the way old shops are: product list, product page, cart.

Plain `string.Template` documents; every value is HTML-escaped before it is substituted.
The footer's "generated at" time is noise in HTML, as the JSON noise fields are.
"""
from __future__ import annotations

from collections.abc import Callable
from html import escape
from string import Template
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from legacy_monolith.carts import get_cart
from legacy_monolith.catalog import get_product, list_categories, list_products
from legacy_monolith.errors import ApiError, bad_request
from legacy_monolith.inventory import get_stock
from legacy_monolith.keys import DATABASE
from legacy_monolith.responses import html_response
from legacy_monolith.validation import MAX_INT, path_id, query_int

routes = web.RouteTableDef()

PAGE_SIZE = 50
_LAYOUT = Template("""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>$title · Legacy Shop</title></head>
<body>
<header><a href="/">Legacy Shop</a> · <a href="/products">All products</a></header>
<main>
<h1>$title</h1>
$body
</main>
<footer><p>generated at $generated_at</p></footer>
</body>
</html>
""")


def layout(title: str, body: str) -> Callable[[str], str]:
    """A renderer for `html_response`: the page, waiting only for its generated-at time."""
    return lambda generated_at: _LAYOUT.substitute(title=escape(title), body=body,
                                                   generated_at=escape(generated_at))


def _price(item: dict[str, Any], field: str = "price", currency: str | None = None) -> str:
    return f"{item[field]:.2f} {escape(currency or item['currency'])}"


def error_page(error: ApiError) -> Callable[[str], str]:
    return layout(f"Error {error.status}", f"<p>{escape(error.message)}</p>")


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    categories = (await request.app[DATABASE].read(list_categories))["items"]
    links = "\n".join(
        f'<li><a href="/products?{urlencode({"category": c["slug"]})}">{escape(c["name"])}</a>'
        f' ({c["product_count"]})</li>' for c in categories)
    return html_response(request, layout("Welcome", f"<h2>Categories</h2>\n<ul>\n{links}\n</ul>"))


@routes.get("/products")
async def product_list(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    category = request.query.get("category", "").strip()
    if len(q) > 200:
        raise bad_request("query parameter 'q' is longer than 200 characters")
    page = query_int(request, "page", default=1, minimum=1, maximum=MAX_INT // PAGE_SIZE)
    result = await request.app[DATABASE].read(list_products, q, category, PAGE_SIZE,
                                              (page - 1) * PAGE_SIZE)
    rows = "\n".join(
        f'<tr><td><a href="/products/{p["id"]}">{escape(p["name"])}</a></td>'
        f'<td>{escape(p["sku"])}</td><td>{escape(p["category"]["name"])}</td>'
        f'<td class="price">{_price(p)}</td></tr>' for p in result["items"])
    nav = []
    params = {k: v for k, v in (("q", q), ("category", category)) if v}
    if page > 1:
        nav.append(f'<a href="/products?{urlencode({**params, "page": page - 1})}">previous</a>')
    if page * PAGE_SIZE < result["total"]:
        nav.append(f'<a href="/products?{urlencode({**params, "page": page + 1})}">next</a>')
    search = ('<form action="/products" method="get">'
              f'<input type="search" name="q" value="{escape(q)}"> <button>Search</button></form>')
    body = (f'{search}\n<p>{result["total"]} products, page {page}</p>\n'
            "<table>\n<tr><th>Name</th><th>SKU</th><th>Category</th><th>Price</th></tr>\n"
            f"{rows}\n</table>\n<nav>{' · '.join(nav)}</nav>")
    return html_response(request, layout("Products", body))


@routes.get("/products/{id}")
async def product_page(request: web.Request) -> web.Response:
    product_id = path_id(request, "id", "product")
    database = request.app[DATABASE]
    product = await database.read(get_product, product_id)
    stock = await database.read(get_stock, product_id)
    body = (f'<p class="price">{_price(product)}</p>\n'
            f'<p>SKU {escape(product["sku"])} · category '
            f'<a href="/products?{urlencode({"category": product["category"]["slug"]})}">'
            f'{escape(product["category"]["name"])}</a></p>\n'
            f'<p>{escape(product["description"])}</p>\n'
            f'<p class="stock">{stock["quantity"]} in stock</p>')
    return html_response(request, layout(product["name"], body))


@routes.get("/cart/{id}")
async def cart_page(request: web.Request) -> web.Response:
    cart_id = path_id(request, "id", "cart")
    cart = await request.app[DATABASE].read(get_cart, cart_id)
    rows = "\n".join(
        f'<tr><td><a href="/products/{i["product_id"]}">{escape(i["name"])}</a></td>'
        f'<td>{i["quantity"]}</td><td>{_price(i, "unit_price", cart["currency"])}</td>'
        f'<td>{_price(i, "line_total", cart["currency"])}</td></tr>' for i in cart["items"])
    body = ("<table>\n<tr><th>Product</th><th>Quantity</th><th>Unit price</th><th>Total</th></tr>\n"
            f"{rows}\n</table>\n"
            f'<p class="total">Total: {_price(cart, "total")}</p>')
    return html_response(request, layout(f"Cart {cart_id}", body))
