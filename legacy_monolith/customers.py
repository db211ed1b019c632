"""Customers: just enough of them for carts and orders to belong to someone."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from legacy_monolith.errors import bad_request, conflict, not_found
from legacy_monolith.keys import DATABASE
from legacy_monolith.models import Customer
from legacy_monolith.responses import json_response, timestamp, utcnow
from legacy_monolith.validation import dry_run, json_object, only_fields, path_id, text_field

routes = web.RouteTableDef()


def _customer_json(customer: Customer) -> dict[str, Any]:
    return {"id": customer.id, "email": customer.email, "name": customer.name,
            "created_at": timestamp(customer.created_at)}


def get_customer(session: Session, customer_id: int) -> dict[str, Any]:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise not_found(f"customer {customer_id} does not exist")
    return _customer_json(customer)


def create_customer(session: Session, email: str, name: str) -> dict[str, Any]:
    if session.scalar(select(Customer.id).where(Customer.email == email)) is not None:
        raise conflict("a customer with this email already exists")
    customer = Customer(email=email, name=name, created_at=utcnow())
    session.add(customer)
    try:
        session.flush()
    except IntegrityError:
        raise conflict("a customer with this email already exists") from None
    return _customer_json(customer)


def _email(body: dict[str, Any]) -> str:
    email = text_field(body, "email", max_length=254)
    local, at, domain = email.partition("@")
    if not (local and at and "." in domain and "@" not in domain and " " not in email):
        raise bad_request("field 'email' must be an address like name@example.org")
    return email


@routes.post("/api/customers")
async def customer_create(request: web.Request) -> web.Response:
    rehearse = dry_run(request)
    body = await json_object(request)
    only_fields(body, ("email", "name"))
    email, name = _email(body), text_field(body, "name", max_length=200)
    customer = await request.app[DATABASE].write(create_customer, email, name, dry_run=rehearse)
    return json_response(request, customer, status=201)


@routes.get("/api/customers/{id}")
async def customer_show(request: web.Request) -> web.Response:
    customer_id = path_id(request, "id", "customer")
    return json_response(request, await request.app[DATABASE].read(get_customer, customer_id))
