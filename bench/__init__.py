"""Same-run benchmark of the gateway against a bare aiohttp floor and the vendor's naive flow."""
