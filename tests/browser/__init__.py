"""The Batch view in a real browser (headless Chromium) against the real api-server."""
