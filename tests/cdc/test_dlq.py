"""Poison events reach the dead-letter table with their reason while the rest of the batch applies."""
from __future__ import annotations

from cdc import dlq
from cdc.apply import STALE
from cdc_apply_helpers import Events, category, mapping, product, rows


def test_poison_goes_to_the_dlq_and_later_events_still_apply(service):
    url, applier = service
    ev = Events()
    batch = [ev.insert("categories", category(1)),
             ev.insert("products", product(1)),
             ev.insert("products", product(2, price="-1.00")),        # violates price_cents >= 0
             ev.insert("products", product(3, price="1.005")),        # not representable in cents
             ev.insert("products", product(4, category_id=99)),       # category not there (yet)
             ev.insert("orders", {"id": 1}),                          # no mapping for this table
             ev.insert("products", product(5))]
    outcome = applier.apply(batch)
    assert outcome.applied == 3
    assert rows(url, "SELECT id FROM products ORDER BY id") == [(1,), (5,)]
    letters = dlq.letters(applier.store, applier.consumer)
    assert [(lt.offset, lt.kind) for lt in letters] == [
        (3, "constraint"), (4, "unmappable"), (5, "lookup"), (6, "unmappable")]
    assert "ck_products_price_cents" in letters[0].reason
    assert "more than two decimals" in letters[1].reason
    assert letters[3].record().event == batch[5].event          # the original event, intact
    # The offsets cover the whole batch: the poison is not consumed again.
    assert applier.stored_offsets()[("legacy.public.products", 0)] == 8


def test_lookup_letters_apply_once_the_referenced_row_arrives(service):
    url, applier = service
    ev = Events()
    applier.apply([ev.insert("products", product(1, category_id=2))])
    assert dlq.retry_lookups(applier) == 0
    applier.apply([ev.insert("categories", category(2))])
    assert dlq.retry_lookups(applier) == 1
    assert rows(url, "SELECT id, category_slug FROM products") == [(1, "cat-2")]
    assert dlq.size(applier.store, applier.consumer) == 0


def test_replay_keeps_a_letter_that_still_fails_and_skips_a_stale_one(service):
    url, applier = service
    ev = Events()
    applier.apply([ev.insert("categories", category(1)),
                   ev.insert("products", product(1, price="-5.00")),
                   ev.insert("products", product(2, price="-5.00"))])
    applier.apply([ev.update("products", None, product(2, price="7.00"))])   # row 2 moved on
    letters = dlq.letters(applier.store, applier.consumer)
    result = dlq.replay(applier, letters)
    assert "ck_products_price_cents" in result[letters[0].id]
    assert result[letters[1].id] == STALE                     # overtaken: skipped, letter resolved
    assert rows(url, "SELECT id, price_cents FROM products") == [(2, 700)]
    assert [(lt.id, lt.attempts) for lt in dlq.letters(applier.store, applier.consumer)] == [(letters[0].id, 2)]
