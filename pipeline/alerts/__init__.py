"""Alerts: a month's findings by email (and a chat webhook), once per finding and file."""
