"""The billing mode of a process, carried by its sessions so limit checks cost no query when off."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.config import Settings

BILLING_INFO = "raptorflow.billing"


@dataclass(frozen=True)
class RazorpayKeys:
    """API and webhook credentials; the previous webhook secret is accepted during a rotation."""

    key_id: str
    key_secret: str
    webhook_secrets: tuple[str, ...]
    base_url: str
    timeout_s: float = 10.0


@dataclass(frozen=True)
class BillingConfig:
    """Everything billing reads from the settings."""

    enabled: bool
    razorpay: RazorpayKeys | None
    gst_rate_bps: int
    grace_days: int
    seller_name: str
    seller_address: str
    seller_state: str
    seller_gstin: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> BillingConfig:
        """Read the billing settings (Razorpay counts as configured only with key id and secret)."""
        keys = None
        if settings.razorpay_key_id and settings.razorpay_key_secret:
            secrets = tuple(
                s for s in (settings.razorpay_webhook_secret, settings.razorpay_webhook_secret_previous) if s
            )
            keys = RazorpayKeys(
                key_id=settings.razorpay_key_id,
                key_secret=settings.razorpay_key_secret,
                webhook_secrets=secrets,
                base_url=settings.razorpay_base_url.rstrip("/"),
                timeout_s=settings.razorpay_timeout_s,
            )
        return cls(
            enabled=settings.billing_enabled,
            razorpay=keys,
            gst_rate_bps=settings.billing_gst_rate_bps,
            grace_days=settings.billing_grace_days,
            seller_name=settings.billing_seller_name,
            seller_address=settings.billing_seller_address,
            seller_state=settings.billing_seller_state,
            seller_gstin=settings.billing_seller_gstin,
        )


DISABLED = BillingConfig(
    enabled=False,
    razorpay=None,
    gst_rate_bps=1800,
    grace_days=7,
    seller_name="RaptorFlow",
    seller_address="",
    seller_state="KA",
    seller_gstin=None,
)


def attach_billing(factory: async_sessionmaker[AsyncSession], config: BillingConfig) -> None:
    """Make every session of `factory` know the billing mode (read by `config_of`)."""
    info = dict(factory.kw.get("info") or {})
    info[BILLING_INFO] = config
    factory.configure(info=info)


def config_of(session: AsyncSession) -> BillingConfig:
    """The billing config of this session's factory; disabled when none was attached."""
    found = session.info.get(BILLING_INFO)
    return found if isinstance(found, BillingConfig) else DISABLED
