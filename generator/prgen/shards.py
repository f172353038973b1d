"""`--shard I/N`: several runners share an organisation, each syncing the repositories whose
stable hash falls in its shard, and never touching the others' environments."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    index: int  # 1 to count
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`2/3`: the second of three shards. ValueError says what is wrong."""
        found = _SHARD.fullmatch(text)
        if not found:
            raise ValueError(f"{text!r} is not I/N (for example 1/3)")
        index, count = int(found.group(1)), int(found.group(2))
        if not 1 <= index <= count:
            raise ValueError(f"{text!r}: I must be between 1 and N")
        return cls(index, count)

    def owns(self, repository: str) -> bool:
        """Whether `repository` is this shard's: the same answer on every machine and run
        (a hash of its lower-cased name, not Python's salted hash())."""
        digest = hashlib.sha256(repository.lower().encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def of(self, repositories: Sequence[str]) -> tuple[str, ...]:
        return tuple(name for name in repositories if self.owns(name))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
