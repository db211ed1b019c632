"""Server-rendered HTML pages: names and prices, escaped, with a "generated at" footer."""
from __future__ import annotations

import re

from legacy_monolith.seed_data import iter_categories, product

FOOTER = re.compile(r"generated at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


async def page(shop, path: str, status: int = 200) -> str:
    response = await shop.get(path)
    assert response.status == status, path
    assert response.content_type == "text/html"
    html = await response.text()
    assert FOOTER.search(html)
    assert response.headers["X-Generated-At"] in html
    return html


async def test_home_lists_categories(shop):
    html = await page(shop, "/")
    for category in iter_categories():
        assert f'href="/products?category={category["slug"]}"' in html
        assert category["name"] in html


async def test_product_list_shows_names_and_prices(shop):
    html = await page(shop, "/products")
    for i in (1, 2, 50):
        assert product(i)["name"] in html
        assert f'{product(i)["price"]:.2f} EUR' in html
    assert 'href="/products?page=2"' in html
    html = await page(shop, "/products?page=2")
    assert product(51)["name"] in html and product(1)["name"] not in html
    assert (await shop.get("/products?page=0")).status == 400
    html = await page(shop, '/products?q="><b>oak')
    assert 'value="&quot;&gt;&lt;b&gt;oak"' in html and "<b>" not in html


async def test_product_page(shop):
    html = await page(shop, "/products/17")
    assert f"<h1>{product(17)['name']}</h1>" in html
    assert f'{product(17)["price"]:.2f} EUR' in html
    assert f'{product(17)["stock"]} in stock' in html
    html = await page(shop, "/products/999999", status=404)
    assert "product 999999 does not exist" in html


async def test_cart_page_and_escaping(shop):
    response = await shop.post("/api/products", json={
        "sku": "XSS-1", "name": "<script>alert(1)</script> Lamp", "price": 3.5, "category": "decor"})
    new_id = (await response.json())["id"]
    await shop.put(f"/api/inventory/{new_id}", json={"quantity": 5})
    cart = await (await shop.post("/api/carts")).json()
    await shop.post(f"/api/carts/{cart['id']}/items", json={"product_id": new_id, "quantity": 2})
    await shop.post(f"/api/carts/{cart['id']}/items", json={"product_id": 1, "quantity": 1})

    html = await page(shop, f"/cart/{cart['id']}")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; Lamp" in html
    assert product(1)["name"] in html
    assert f"Total: {product(1)['price'] + 7:.2f} EUR" in html
    await page(shop, "/cart/999999", status=404)


async def test_healthz(shop):
    response = await shop.get("/healthz")
    body = await response.json()
    assert response.status == 200 and body["status"] == "ok"
