"""The input limits every untrusted byte is held to (DESIGN.md, "Limits for untrusted input").

One frozen value object, passed down to the parsers in :mod:`exchange.model`; the defaults
are the documented ones, and :meth:`Limits.from_settings` reads the node's configuration.
Pure code, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exchange.config import Settings


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps applied before and during parsing of untrusted input.

    Attributes:
        max_body_bytes: Largest request body accepted (HTTP 413 above it).
        max_objects: Most objects one TAXII envelope may carry.
        max_object_bytes: Largest single object, measured as RFC 8785 canonical bytes.
        max_depth: Deepest JSON nesting (arrays and objects) accepted.
        max_pattern_bytes: Longest STIX pattern, in UTF-8 bytes.
        max_pattern_observations: Most observation expressions (``[`` openings) in a pattern.
    """

    max_body_bytes: int = 10 * 1024 * 1024
    max_objects: int = 1000
    max_object_bytes: int = 256 * 1024
    max_depth: int = 32
    max_pattern_bytes: int = 8 * 1024
    max_pattern_observations: int = 256

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits configured for one node.

        Args:
            settings: The node's effective settings.

        Returns:
            The limits taken from ``max_content_length``, ``max_objects_per_envelope``,
            ``max_object_bytes``, ``max_json_depth``, ``max_pattern_bytes`` and
            ``max_pattern_observations``.
        """
        return cls(
            max_body_bytes=settings.max_content_length,
            max_objects=settings.max_objects_per_envelope,
            max_object_bytes=settings.max_object_bytes,
            max_depth=settings.max_json_depth,
            max_pattern_bytes=settings.max_pattern_bytes,
            max_pattern_observations=settings.max_pattern_observations,
        )
