"""Template captions: a sentence composed from the detections and scene labels.

Used until a neural captioner is configured; every result carries ``caption_source`` so a
composed caption is never mistaken for a neural one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

TEMPLATE_SOURCE = "template"
_NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
_IRREGULAR = {"person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep", "skis": "skis",
              "scissors": "scissors", "eye glasses": "eye glasses", "hair drier": "hair driers"}


def plural(noun: str, count: int) -> str:
    """'person', 2 -> 'people'; 'bus', 3 -> 'buses'."""
    if count == 1:
        return noun
    if noun in _IRREGULAR:
        return _IRREGULAR[noun]
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def count_phrase(noun: str, count: int) -> str:
    """'dog', 1 -> 'a dog'; 'umbrella', 1 -> 'an umbrella'; 'person', 12 -> '12 people'."""
    if count == 1:
        return ("an " if noun[:1] in ("a", "e", "i", "o", "u") else "a ") + noun
    number = _NUMBERS[count] if count < len(_NUMBERS) else str(count)
    return f"{number} {plural(noun, count)}"


def join_phrases(phrases: Sequence[str]) -> str:
    """['a', 'b', 'c'] -> 'a, b and c'."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def template_caption(object_names: Sequence[str], scene_labels: Sequence[tuple[str, float]],
                     min_label_score: float = 0.2, max_objects: int = 4) -> str:
    """Compose e.g. 'two people and a horse; scene: seashore'.

    Objects are counted by class, most frequent first; the scene is the best label scoring at
    least ``min_label_score``.
    """
    counts = Counter(object_names).most_common()
    phrases = [count_phrase(name, n) for name, n in counts[:max_objects]]
    if len(counts) > max_objects:
        phrases.append("other objects")
    objects = join_phrases(phrases) if phrases else "no objects detected"
    scene = next((name for name, score in scene_labels if score >= min_label_score), None)
    return f"{objects}; scene: {scene}" if scene else objects
