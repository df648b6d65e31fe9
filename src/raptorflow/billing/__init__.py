"""Billing: plans, subscriptions, usage limits, Razorpay payments and webhooks, ledger, invoices."""
