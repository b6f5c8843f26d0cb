"""Wording shared by messages: counts with their noun in the right number, "a" or "an"."""


def count(n: int, noun: str) -> str:
    """``count(1, "frame")`` → "1 frame", ``count(3, "frame")`` → "3 frames" (regular plurals only)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def article(word: str) -> str:
    """"an" before a written vowel ("an e4e encoder", "an ArcFace"), else "a"."""
    return "an" if word[:1].lower() in "aeiou" else "a"
