"""Tests for ct_assets, mirroring the package layout."""
