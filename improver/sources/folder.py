"""A folder of trace files, read as one input: spans in one file meet their annotations in another.

Every file whose name ends in ``.jsonl``, ``.json``, ``.csv`` or ``.parquet`` (gzipped or
not) is sniffed on its own and fed, in name order, into one ``SpanAssembler``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from improver.errors import TraceError
from improver.models import Event, Quarantined
from improver.sources.mapping import SpanAssembler, SpanFileSource
from improver.sources.rows import base_suffix

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class FolderSource(SpanFileSource):
    def files(self) -> list[Path]:
        files = sorted(p for p in self.path.iterdir() if p.is_file() and base_suffix(p) in SUFFIXES)
        if not files:
            raise TraceError(f"{self.path} holds no {', '.join(SUFFIXES)} files of spans or annotations")
        return files

    def feed(self, assembler: SpanAssembler) -> Iterator[Event | Quarantined]:
        from improver.sources import file_source

        for path in self.files():
            source = file_source(path, self.mapping, self.numeric_fields, self.limits)
            if isinstance(source, SpanFileSource):
                source.cleaned = self.cleaned
                yield from source.feed(assembler)
                continue
            for item in source.events():  # native events need no joining
                assembler.read()
                if not isinstance(item, Quarantined):
                    assembler.tally["joined"] += 1
                yield item
