"""The ``orders`` row of an order, stored durably *before* the order is sent.

Execution calls :meth:`OrderStore.record` and only then POSTs. If the process dies
between the two, the row (status ``pending_submit``) is found at restart and settled by
looking its ``client_order_id`` up at the broker (:mod:`live.reconcile`): the order is
either there (and tracked from then on) or marked ``not_sent``. An order is therefore
never at the broker without a row here, and never sent twice under two ids. If Postgres
is unreachable the order is refused rather than sent unrecorded.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg

from trader.exceptions import TemporaryError

PENDING = "pending_submit"


class OrderStore:
    """Insert ``orders`` rows over one autocommit connection (reopened after a failure).

    Parameters
    ----------
    dsn : str
        libpq connection string.
    session_id : str
        Stored with every row.
    """

    def __init__(self, dsn: str, session_id: str) -> None:
        self.dsn = dsn
        self.session_id = session_id
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def record(
        self,
        *,
        client_order_id: str,
        correlation_id: str,
        symbol: str,
        side: str,
        qty: Decimal,
        order_type: str,
        time_in_force: str,
    ) -> None:
        """Store the order (status ``pending_submit``), committed before returning.

        Parameters
        ----------
        qty : Decimal
            Shares (> 0).

        Raises
        ------
        TemporaryError
            Postgres is unreachable or refused the row: do not send the order.
        """
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=2
                )
            await self._conn.execute(
                "INSERT INTO orders (client_order_id, session_id, correlation_id, symbol, side,"
                " qty, order_type, time_in_force, status)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    client_order_id,
                    self.session_id,
                    correlation_id,
                    symbol,
                    side,
                    qty,
                    order_type,
                    time_in_force,
                    PENDING,
                ),
            )
        except psycopg.Error as e:
            await self.close()
            raise TemporaryError(f"order {client_order_id} not recorded: {e}") from e

    async def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
