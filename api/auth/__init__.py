"""Who the caller is: JWT bearer tokens and API keys in, an ``Identity`` out.

``authenticator.Authenticator`` takes the credential a request carries (``Authorization:
Bearer`` with a JWT or a ``tw_`` API key, or ``X-API-Key``) and answers the ``Identity`` it
proves, or an ``AuthError``: ``jwt_verifier`` checks signatures and claims with PyJWT (HS256
with a shared secret, RS256/ES256 with keys from ``jwks``), ``api_keys`` holds the hashed keys
of a reloadable file, and ``development`` mints the short-lived tokens of development mode.
"""
