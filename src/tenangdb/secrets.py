"""The secrets this process knows, so that nothing meant for humans or children shows them."""

from __future__ import annotations


class Redactor:
    """Replaces every registered secret with ******** in text meant for humans."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 3:
            self._secrets.add(secret)

    def contains_secret(self, text: str) -> bool:
        return any(secret in text for secret in self._secrets)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "********")
        return text


redact = Redactor()
