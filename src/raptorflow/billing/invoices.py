"""Tax invoices and credit notes: gapless numbers per Indian financial year, GST split, HTML view."""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.billing.mode import BillingConfig
from raptorflow.kit.db import dialect_name, new_id, utcnow
from raptorflow.models import Invoice, InvoiceSequence

IST = ZoneInfo("Asia/Kolkata")


def gst_of(net_paise: int, rate_bps: int) -> int:
    """GST on a net amount, rounded half up to the paisa (integer arithmetic only)."""
    return (net_paise * rate_bps + 5_000) // 10_000


@dataclass(frozen=True)
class TaxSplit:
    """CGST + SGST within the seller's state, IGST across states."""

    cgst: int
    sgst: int
    igst: int


def split_tax(tax_paise: int, seller_state: str, buyer_state: str | None) -> TaxSplit:
    """Divide the tax: same state → half CGST, half SGST; another or unknown state → IGST."""
    if buyer_state is not None and buyer_state.upper() == seller_state.upper():
        cgst = tax_paise // 2
        return TaxSplit(cgst=cgst, sgst=tax_paise - cgst, igst=0)
    return TaxSplit(cgst=0, sgst=0, igst=tax_paise)


def financial_year(moment: datetime) -> str:
    """India's financial year (April to March, in IST) of a moment, as '2026-27'."""
    local = moment.astimezone(IST)
    start = local.year if local.month >= 4 else local.year - 1
    return f"{start}-{(start + 1) % 100:02d}"


async def next_number(session: AsyncSession, year: str) -> int:
    """Take the next number of the year's series, in the caller's transaction (a rollback frees it)."""
    stmt: Any = (
        pg_insert(InvoiceSequence)
        if dialect_name(session) == "postgresql"
        else sqlite_insert(InvoiceSequence)
    )
    stmt = stmt.values(financial_year=year, last_number=1).on_conflict_do_update(
        index_elements=[InvoiceSequence.financial_year],
        set_={"last_number": InvoiceSequence.last_number + 1},
    )
    result = await session.execute(stmt.returning(InvoiceSequence.last_number))
    return int(result.scalar_one())


def seller_of(config: BillingConfig) -> dict[str, Any]:
    """The seller block printed on every invoice."""
    return {
        "name": config.seller_name,
        "address": config.seller_address,
        "state": config.seller_state,
        "gstin": config.seller_gstin,
    }


async def issue(
    session: AsyncSession,
    config: BillingConfig,
    *,
    org_id: uuid.UUID,
    kind: str,
    source: str,
    ledger_transaction_id: uuid.UUID,
    buyer: dict[str, Any],
    lines: list[dict[str, Any]],
    tax_paise: int,
    currency: str,
    related_invoice_id: uuid.UUID | None = None,
) -> Invoice:
    """Number and store an invoice or credit note (subtotal from the lines, tax split by state)."""
    now = utcnow()
    year = financial_year(now)
    seq = await next_number(session, year)
    subtotal = sum(int(line["amount_paise"]) for line in lines)
    split = split_tax(tax_paise, config.seller_state, buyer.get("state"))
    prefix = "RF" if kind == "invoice" else "RF-CN"
    values = {
        "id": new_id(),
        "org_id": org_id,
        "number": f"{prefix}/{year}/{seq:06d}",
        "financial_year": year,
        "seq": seq,
        "kind": kind,
        "source": source,
        "ledger_transaction_id": ledger_transaction_id,
        "related_invoice_id": related_invoice_id,
        "issued_at": now,
        "seller": seller_of(config),
        "buyer": buyer,
        "lines": lines,
        "subtotal_paise": subtotal,
        "cgst_paise": split.cgst,
        "sgst_paise": split.sgst,
        "igst_paise": split.igst,
        "total_paise": subtotal + tax_paise,
        "currency": currency,
    }
    # Core insert (no ORM identity bookkeeping): invoices are never updated afterwards.
    await session.execute(insert(Invoice).values(**values))
    found = await session.execute(select(Invoice).where(Invoice.id == values["id"]))
    return found.scalar_one()


def rupees(paise: int) -> str:
    """Paise as '₹3,500.00' (integer arithmetic, no float)."""
    sign = "-" if paise < 0 else ""
    whole, fraction = divmod(abs(paise), 100)
    return f"{sign}₹{whole:,}.{fraction:02d}"


def render_html(invoice: Invoice) -> str:
    """A printable HTML page of an invoice or credit note (every value escaped)."""

    def e(value: Any) -> str:
        return html.escape("" if value is None else str(value))

    title = "Tax invoice" if invoice.kind == "invoice" else "Credit note"
    rows = "".join(
        f"<tr><td>{e(line.get('description'))}</td><td>{e(line.get('sac', '998314'))}</td>"
        f"<td class=n>{e(line.get('quantity', 1))}</td>"
        f"<td class=n>{e(rupees(int(line['amount_paise'])))}</td></tr>"
        for line in invoice.lines
    )
    taxes = []
    if invoice.cgst_paise or invoice.sgst_paise:
        taxes += [("CGST", invoice.cgst_paise), ("SGST", invoice.sgst_paise)]
    if invoice.igst_paise:
        taxes.append(("IGST", invoice.igst_paise))
    tax_rows = "".join(
        f"<tr><td colspan=3>{name}</td><td class=n>{e(rupees(v))}</td></tr>" for name, v in taxes
    )

    def party(block: dict[str, Any]) -> str:
        gstin = f"<br>GSTIN {e(block.get('gstin'))}" if block.get("gstin") else ""
        name, address, state = e(block.get("name")), e(block.get("address")), e(block.get("state"))
        return f"<strong>{name}</strong><br>{address}<br>State {state}{gstin}"

    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{e(title)} {e(invoice.number)}</title>"
        "<style>body{font-family:sans-serif;max-width:48rem;margin:2rem auto}"
        "table{width:100%;border-collapse:collapse}td,th{border-bottom:1px solid #ccc;padding:.4rem}"
        ".n{text-align:right}@media print{body{margin:0}}</style></head><body>"
        f"<h1>{e(title)}</h1><p>Number <strong>{e(invoice.number)}</strong><br>"
        f"Date {e(invoice.issued_at.astimezone(IST).date().isoformat())}</p>"
        f"<table><tr><td>From<br>{party(invoice.seller)}</td><td>To<br>{party(invoice.buyer)}</td></tr></table>"
        "<table><tr><th>Description</th><th>SAC</th><th class=n>Qty</th><th class=n>Amount</th></tr>"
        f"{rows}<tr><td colspan=3>Subtotal</td><td class=n>{e(rupees(invoice.subtotal_paise))}</td></tr>"
        f"{tax_rows}<tr><th colspan=3>Total</th><th class=n>{e(rupees(invoice.total_paise))}</th></tr>"
        "</table></body></html>"
    )
