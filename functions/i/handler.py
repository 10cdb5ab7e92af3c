"""I — identification: ``GET /user/{customer_id}`` answers the customer's name and email."""

from __future__ import annotations

import falcon

from runner.context import Context
from runner.ids import parse_customer_id


class Customer:
    """One customer of the shop, by id."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, customer_id: str) -> None:
        customer = self.ctx.customers.find(parse_customer_id(customer_id))
        if customer is None:
            raise falcon.HTTPNotFound(title="Unknown customer", description=f"No customer has the id {customer_id}.")
        resp.media = customer.to_dict()
        resp.cache_control = ["private", "max-age=60"]


def routes(ctx: Context) -> dict[str, object]:
    return {"/user/{customer_id}": Customer(ctx)}
