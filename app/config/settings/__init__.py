"""Settings modules: base (shared), local (development), production (containers), test (pytest)."""
