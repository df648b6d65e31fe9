"""Campaigns: sets of intrusions with a common objective."""
