"""Building an utterance piece by piece so every annotated span is exact."""
from __future__ import annotations

Annotation = dict  # {"key", "value", "start", "exclusive_end"} exactly as in the release files


class Utterance:
    """Append text and annotated spans; offsets are counted as the string grows."""

    __slots__ = ("parts", "n", "attrs")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.n = 0
        self.attrs: list[Annotation] = []

    def say(self, text: str) -> "Utterance":
        if text:
            self.parts.append(text)
            self.n += len(text)
        return self

    def span(self, key: str, surface: str, core: tuple[int, str] | None = None) -> "Utterance":
        """Say `surface` and annotate it, or only its core (offset, text) inside it (男士 -> 男)."""
        start = self.n
        self.say(surface)
        at, value = core or (0, surface)
        if surface[at:at + len(value)] != value:
            raise ValueError(f"core {value!r} is not at {at} in {surface!r}")
        self.attrs.append({"key": key, "value": value, "start": start + at, "exclusive_end": start + at + len(value)})
        return self

    def asked(self, key: str) -> "Utterance":
        """An attribute asked about without naming a value: ("", -1, -1)."""
        self.attrs.append({"key": key, "value": "", "start": -1, "exclusive_end": -1})
        return self

    def fill(self, template: str, slots) -> "Utterance":
        """Render `template`, whose '{}' are replaced in order by slots: (key, surface) or
        (key, surface, (offset, core)) -> span, str -> text."""
        pieces = template.split("{}")
        if len(pieces) - 1 != len(slots):
            raise ValueError(f"template {template!r} has {len(pieces) - 1} slots, got {len(slots)}")
        for i, piece in enumerate(pieces):
            self.say(piece)
            if i < len(slots):
                slot = slots[i]
                if isinstance(slot, tuple):
                    self.span(*slot)
                else:
                    self.say(slot)
        return self

    def extend(self, other: "Utterance") -> "Utterance":
        base = self.n
        for part in other.parts:
            self.say(part)
        for a in other.attrs:
            if a["start"] >= 0:
                a = dict(a, start=a["start"] + base, exclusive_end=a["exclusive_end"] + base)
            self.attrs.append(a)
        return self

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def result(self) -> tuple[str, list[Annotation]]:
        return self.text, self.attrs

    def __len__(self) -> int:
        return self.n
