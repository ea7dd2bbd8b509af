"""The final leak scan: nothing improver writes or serves may still hold personal data or secrets.

Redaction masks traces before storage; this is the check behind it. Everything that leaves
the store — experiment files (manifest, config, patch, report, decisions, results), PR
branches, commit messages and bodies, graph exports, MCP answers, HTML reports, review-queue
files and annotations, and datasets pushed to Phoenix — passes
``LeakScan.check`` before it is written or sent. It runs the project's redaction detectors
(and its names and patterns) plus detect-secrets' token detectors, line by line where the
fast screen (over a few thousand lines at once) sees a reason to look. Anything found stops
the write — fail closed — with a message naming the kind, the place and the line, never the
value itself.
"""
from __future__ import annotations

from collections import Counter
from itertools import chain
from pathlib import Path
from typing import Sequence

import orjson

from improver.errors import ImproverError
from improver.redact import RedactionConfig, Redactor, flagged_pieces, project_key, redaction_config

# detect-secrets plugins that match tokens by pattern alone (no entropy guesses, no network).
DETECT_SECRETS_PLUGINS = ("aws.AWSKeyDetector", "github_token.GitHubTokenDetector", "gitlab_token.GitLabTokenDetector",
                          "openai.OpenAIDetector", "slack.SlackDetector", "stripe.StripeDetector",
                          "private_key.PrivateKeyDetector", "jwt.JwtTokenDetector", "sendgrid.SendGridDetector",
                          "twilio.TwilioKeyDetector", "npm.NpmDetector", "pypi_token.PypiTokenDetector",
                          "discord.DiscordBotTokenDetector", "telegram_token.TelegramBotTokenDetector",
                          "azure_storage_key.AzureStorageKeyDetector", "mailchimp.MailchimpDetector",
                          "square_oauth.SquareOAuthDetector", "artifactory.ArtifactoryDetector")


SCREEN_BATCH = 4096  # lines screened together
MAX_CLEAN = 2_000_000  # clean values remembered by find_rows, at most


class LeakError(ImproverError):
    """Something improver was about to write or send still holds personal data or a secret."""


def detect_secrets_plugins() -> list:
    import importlib

    plugins = []
    for name in DETECT_SECRETS_PLUGINS:
        module, _, cls = name.rpartition(".")
        plugins.append(getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), cls)())
    return plugins


class LeakScan:
    """``check(text, where)`` raises LeakError when ``text`` holds what the detectors find."""

    def __init__(self, config: RedactionConfig | None = None, key: bytes | None = None):
        config = config or RedactionConfig()
        self.enabled = config.leak_scan
        self.redactor = Redactor(config.model_copy(update={"ner": False}), key)  # NER is for ingest, not a gate
        self._plugins: list | None = None
        self._clean: set = set()  # values find_rows found nothing in

    @classmethod
    def from_project(cls, project) -> "LeakScan":
        return cls(redaction_config(project), project_key(project))

    @property
    def plugins(self) -> list:
        if self._plugins is None:
            self._plugins = detect_secrets_plugins()
        return self._plugins

    def find(self, text: str) -> dict[int, Counter]:
        """Line number -> kinds found on that line (lines end at newlines only, as a file's lines do:
        not at the other breaks str.splitlines knows, such as U+2028, which JSON leaves unescaped)."""
        found: dict[int, Counter] = {}
        if not self.enabled or not text:
            return found
        lines = text.split("\n")
        for index in range(len(lines)) if self.redactor.extra else self._screened(lines):
            number, line = index + 1, lines[index]
            kinds = self.redactor.find(line)
            for plugin in self.plugins:
                if any(True for _ in plugin.analyze_string(line)):
                    kinds["secret"] += 1
            if kinds:
                found[number] = kinds
        return found

    @staticmethod
    def _screened(lines: list[str]) -> list[int]:
        """The indexes, in order, of the lines the fast screen sees a reason to look at (exactly
        those ``might_hold`` flags): ``flagged_pieces`` over batches of lines."""
        out = []
        for start in range(0, len(lines), SCREEN_BATCH):
            batch = [line.encode("utf-8", "surrogatepass") for line in lines[start:start + SCREEN_BATCH]]
            out += [start + index for index in sorted(flagged_pieces(batch, json=False))]
        return out

    def check(self, text: str, where: str) -> None:
        self.refuse(self.find(text), where)

    def check_rows(self, rows: Sequence[dict], where: str) -> None:
        """``check`` of rows about to be written as JSON lines (``find_rows``)."""
        self.refuse(self.find_rows(rows), where)

    def find_rows(self, rows: Sequence[dict]) -> dict[int, Counter]:
        """``find`` on the JSON lines of ``rows``, by their values: each distinct key and value (as the
        JSON text the line holds) is scanned once, so the 100,000 lines of a decisions file that repeat
        a few hundred reasonings cost a scan of those, plus one of the session ids. Line -> kinds found
        in the values that line holds. Values found clean are not scanned again by this scan (the
        decisions files of one cycle repeat every session id)."""
        if not self.enabled or not rows:
            return {}
        values = list(chain.from_iterable(map(dict.values, rows)))
        pieces = set(chain.from_iterable(map(dict.keys, rows))) | {v for v in values if type(v) is str}
        pieces |= {orjson.dumps(v) for v in values if type(v) is not str}  # a key, a string, or another value's JSON
        pieces = list(pieces - self._clean)
        texts = [piece.decode() if type(piece) is bytes else orjson.dumps(piece).decode() for piece in pieces]
        found = self.find("\n".join(texts))
        flagged = {pieces[number - 1]: kinds for number, kinds in found.items()}
        if len(self._clean) > MAX_CLEAN:
            self._clean.clear()
        self._clean.update(piece for piece in pieces if piece not in flagged)
        if not flagged:
            return {}
        on_lines: dict[int, Counter] = {}
        for number, row in enumerate(rows, 1):
            for key, value in row.items():
                for piece in (key, value if type(value) is str else orjson.dumps(value)):
                    if piece in flagged:
                        on_lines[number] = on_lines.get(number, Counter()) + flagged[piece]
        return on_lines

    @staticmethod
    def refuse(found: dict[int, Counter], where: str) -> None:
        """Raise LeakError naming what ``find`` or ``find_rows`` found (line -> kinds) in ``where``; nothing found: return."""
        if not found:
            return
        kinds = sum(found.values(), Counter())
        lines = ", ".join(map(str, list(found)[:5])) + (" …" if len(found) > 5 else "")
        raise LeakError(
            f"refusing to write {where}: it would hold {', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))} "
            f"(line {lines}) that redaction did not mask. improver writes nothing that still holds personal data "
            "or secrets. Mask them at ingest (add redaction.names or redaction.patterns in improver.yaml; a store "
            "ingested with redaction off must be rebuilt: delete .improver/traces.sqlite and ingest again), or set "
            "redaction.leak_scan: false in improver.yaml if these values are not personal data")

    def check_file(self, path: Path, where: str | None = None) -> None:
        """Check a written file; on a leak the file is removed before LeakError is raised."""
        try:
            self.check(Path(path).read_text(encoding="utf-8", errors="replace"), where or str(path))
        except LeakError:
            Path(path).unlink(missing_ok=True)
            raise
