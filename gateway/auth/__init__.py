"""OAuth 2.0 at the gateway: the client registry, signing keys, the token endpoint
(client credentials, RFC 6749 / RFC 9068 JWTs) and the middleware that authenticates
every request and authorises it by scope."""
