"""The demo OAuth 2.0 authorization server (authlib's server side): storage (:mod:`.models`),
grants (:mod:`.grants`), HTML pages (:mod:`.pages`) and the server (:mod:`.server`)."""
