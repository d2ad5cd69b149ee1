"""The api-server plugin: the Batch view (``app.py``), registered through provider info."""
