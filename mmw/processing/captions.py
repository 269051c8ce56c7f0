"""Template captions: a sentence composed from the detections and scene labels.

Used until a neural captioner is configured; every result carries ``caption_source`` so a
composed caption is never mistaken for a neural one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

#: Where users read how to switch to neural captions (messages point here).
NEURAL_CAPTIONS_DOC = "docs/captions.md"
NEURAL_CAPTIONS_HINT = f"for BLIP/GIT captions set models.caption.model in config/config.yaml ({NEURAL_CAPTIONS_DOC})"
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


def caption_source_name(model: str) -> str:
    """What CAPTION_SOURCE says for ``models.caption.model``: a hub id as is, a local folder by its name."""
    path = Path(model).expanduser()
    return path.name if path.is_dir() or model.startswith((".", "/", "~")) else model


def caption_mode_line(model: str, num_beams: int, max_new_tokens: int, dense_top_k: int) -> str:
    """One line saying how captions are made (``launcher run`` prints it), from ``models.caption``."""
    if not model.strip():
        return f"captions: template (composed from detections and labels; models.caption.model is empty); " \
               f"{NEURAL_CAPTIONS_HINT}"
    search = "greedy" if num_beams == 1 else f"beam search ({num_beams} beams)"
    return (f"captions: {caption_source_name(model)} (neural, {search}, up to {max_new_tokens} tokens; "
            f"dense captions for the top {dense_top_k} detections)")
