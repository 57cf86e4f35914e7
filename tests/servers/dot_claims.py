"""The OpenID Connect claims of the DOT test server's users (imported by DOT after Django setup).

As a real deployment does (DOT's documentation, "Adding claims to the ID token"): each user's
``email`` is ``NAME@example.com`` and ``preferred_username`` is the user name, in the ID token
and at the userinfo endpoint, whatever scopes were granted.
"""

from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator


class ClaimsValidator(OAuth2Validator):  # type: ignore[misc]
    oidc_claim_scope = None  # every claim, whatever the scopes

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        name = request.user.username
        return {"email": f"{name}@example.com", "email_verified": True, "preferred_username": name}
