"""Test helpers shared across the suite: recorded-traffic replay."""
