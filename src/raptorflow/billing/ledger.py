"""The double-entry ledger: balanced by construction, append-only, corrected only by reversals.

An entry debits one account and credits another by the same amount in the same currency, so the
debits and credits of every transaction are equal per currency whatever the entries are; the
database refuses a non-positive amount, one account on both sides, or an unknown account.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.kit.db import new_id, utcnow
from raptorflow.models import Invoice, LedgerEntry, LedgerTransaction, Payment
from raptorflow.models.billing import LEDGER_ACCOUNTS

KINDS = ("charge", "payment", "credit_note", "refund", "reversal")


class LedgerError(ValueError):
    """A transaction that cannot be posted (it would not balance or names an unknown account)."""


@dataclass(frozen=True)
class Posting:
    """`amount` paise debited to `debit` and credited to `credit`."""

    debit: str
    credit: str
    amount: int
    currency: str = "INR"

    def __post_init__(self) -> None:
        if type(self.amount) is not int or self.amount <= 0:
            raise LedgerError(f"amount must be a positive integer of paise, not {self.amount!r}")
        if self.debit not in LEDGER_ACCOUNTS or self.credit not in LEDGER_ACCOUNTS:
            raise LedgerError(f"unknown account in {self.debit!r} / {self.credit!r}")
        if self.debit == self.credit:
            raise LedgerError("an entry needs two different accounts")
        if len(self.currency) != 3 or not self.currency.isupper() or not self.currency.isascii():
            raise LedgerError(f"currency must be an ISO 4217 code, not {self.currency!r}")


def totals(postings: list[Posting]) -> dict[str, tuple[int, int]]:
    """Per currency: (sum of debits, sum of credits) of a list of postings."""
    out: dict[str, tuple[int, int]] = {}
    for p in postings:
        debit, credit = out.get(p.currency, (0, 0))
        out[p.currency] = (debit + p.amount, credit + p.amount)
    return out


async def post(
    session: AsyncSession,
    org_id: uuid.UUID,
    kind: str,
    reference: str,
    postings: list[Posting],
    *,
    memo: str = "",
    reverses_id: uuid.UUID | None = None,
) -> LedgerTransaction:
    """Record one balanced transaction (one per org, kind and reference, enforced by the database)."""
    if kind not in KINDS:
        raise LedgerError(f"unknown transaction kind {kind!r}")
    if not postings:
        raise LedgerError("a transaction needs at least one entry")
    unbalanced = [c for c, (d, k) in totals(postings).items() if d != k]
    if unbalanced:  # cannot happen with Posting; kept so a future entry shape cannot slip through
        raise LedgerError(f"transaction does not balance in {unbalanced}")
    now = utcnow()
    txn = LedgerTransaction(
        id=new_id(),
        org_id=org_id,
        kind=kind,
        reference=reference,
        memo=memo[:300],
        reverses_id=reverses_id,
        created_at=now,
    )
    session.add(txn)
    await session.flush()
    session.add_all(
        LedgerEntry(
            id=new_id(),
            org_id=org_id,
            transaction_id=txn.id,
            debit_account=p.debit,
            credit_account=p.credit,
            amount_paise=p.amount,
            currency=p.currency,
            created_at=now,
        )
        for p in postings
    )
    await session.flush()
    return txn


async def postings_of(session: AsyncSession, transaction_id: uuid.UUID) -> list[Posting]:
    """The entries of one transaction."""
    rows = await session.execute(
        select(
            LedgerEntry.debit_account,
            LedgerEntry.credit_account,
            LedgerEntry.amount_paise,
            LedgerEntry.currency,
        ).where(LedgerEntry.transaction_id == transaction_id)
    )
    return [Posting(d, c, int(a), cur) for d, c, a, cur in rows]


async def reverse(session: AsyncSession, txn: LedgerTransaction, reason: str) -> LedgerTransaction:
    """Cancel a transaction by a new one with every entry's sides swapped (the original stays)."""
    mirrored = [Posting(p.credit, p.debit, p.amount, p.currency) for p in await postings_of(session, txn.id)]
    return await post(session, txn.org_id, "reversal", str(txn.id), mirrored, memo=reason, reverses_id=txn.id)


async def balances(session: AsyncSession, org_id: uuid.UUID) -> dict[tuple[str, str], int]:
    """Per (account, currency): debits minus credits for one org."""
    out: dict[tuple[str, str], int] = {}
    for side, sign in ((LedgerEntry.debit_account, 1), (LedgerEntry.credit_account, -1)):
        rows = await session.execute(
            select(side, LedgerEntry.currency, func.sum(LedgerEntry.amount_paise))
            .where(LedgerEntry.org_id == org_id)
            .group_by(side, LedgerEntry.currency)
        )
        for account, currency, amount in rows:
            out[(account, currency)] = out.get((account, currency), 0) + sign * int(amount)
    return out


async def check(session: AsyncSession) -> list[str]:
    """Every ledger invariant over the whole ledger (all orgs); the violations found, if any."""
    problems: list[str] = []
    empty = await session.execute(
        select(LedgerTransaction.id).where(
            ~select(LedgerEntry.id).where(LedgerEntry.transaction_id == LedgerTransaction.id).exists()
        )
    )
    problems += [f"transaction {t} has no entries" for (t,) in empty]
    bad_entries = await session.execute(
        select(LedgerEntry.id, LedgerEntry.transaction_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            (LedgerEntry.org_id != LedgerTransaction.org_id)
            | (LedgerEntry.amount_paise <= 0)
            | (LedgerEntry.debit_account == LedgerEntry.credit_account)
            | LedgerEntry.debit_account.not_in(LEDGER_ACCOUNTS)
            | LedgerEntry.credit_account.not_in(LEDGER_ACCOUNTS)
        )
    )
    problems += [f"entry {e} of transaction {t} is malformed" for e, t in bad_entries]
    problems += await _check_reversals(session)
    problems += await _check_payments(session)
    return problems


async def _check_reversals(session: AsyncSession) -> list[str]:
    problems: list[str] = []
    reversals = (
        await session.execute(select(LedgerTransaction).where(LedgerTransaction.kind == "reversal"))
    ).scalars()
    for rev in reversals:
        original = await session.get(LedgerTransaction, rev.reverses_id) if rev.reverses_id else None
        if original is None or original.org_id != rev.org_id:
            problems.append(f"reversal {rev.id} names no transaction of its org")
            continue
        mine = Counter((p.debit, p.credit, p.amount, p.currency) for p in await postings_of(session, rev.id))
        theirs = Counter(
            (p.credit, p.debit, p.amount, p.currency) for p in await postings_of(session, original.id)
        )
        if mine != theirs:
            problems.append(f"reversal {rev.id} does not mirror transaction {original.id}")
    return problems


async def _check_payments(session: AsyncSession) -> list[str]:
    """Each credited payment: one charge, one payment transaction and one invoice; nothing else."""
    problems: list[str] = []
    counts: dict[tuple[uuid.UUID, str, str], int] = {}
    sums: dict[tuple[uuid.UUID, str, str], int] = {}
    for org, kind, ref, n, total in await session.execute(
        select(
            LedgerTransaction.org_id,
            LedgerTransaction.kind,
            LedgerTransaction.reference,
            func.count(func.distinct(LedgerTransaction.id)),
            func.coalesce(func.sum(LedgerEntry.amount_paise), 0),
        )
        .outerjoin(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.kind.in_(("charge", "payment")))
        .group_by(LedgerTransaction.org_id, LedgerTransaction.kind, LedgerTransaction.reference)
    ):
        counts[(org, kind, ref)] = int(n)
        sums[(org, kind, ref)] = int(total)
    credited = {
        (org, ref): amount
        for org, ref, amount in await session.execute(
            select(Payment.org_id, Payment.razorpay_payment_id, Payment.amount_paise).where(
                Payment.credited_at.is_not(None)
            )
        )
    }
    invoiced = {
        src.removeprefix("payment:")
        for (src,) in await session.execute(select(Invoice.source).where(Invoice.kind == "invoice"))
    }
    for (org, ref), amount in credited.items():
        for kind in ("charge", "payment"):
            if counts.get((org, kind, ref), 0) != 1:
                problems.append(f"payment {ref} has {counts.get((org, kind, ref), 0)} {kind} transactions")
            elif sums[(org, kind, ref)] != amount:
                problems.append(f"{kind} of payment {ref} is {sums[(org, kind, ref)]} paise, paid {amount}")
        if ref not in invoiced:
            problems.append(f"payment {ref} was credited without an invoice")
    for org, kind, ref in counts:
        if (org, ref) not in credited:
            problems.append(f"{kind} transaction for {ref} has no credited payment")
    return problems
