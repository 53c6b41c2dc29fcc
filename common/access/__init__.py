"""Who may do what through the API: applications (tenants) and API keys with
scopes. ``keys`` makes and recognises keys; ``scopes`` is the pure rule of what
a key may touch."""
