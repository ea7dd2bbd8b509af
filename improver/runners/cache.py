"""The decision cache: wraps any runner, so a case the same agent has already decided
with the same config is answered from disk instead of rerun.

An answer's key is a hash of the agent's fingerprint, the config folder's content hash
and the case. The fingerprint is ``target.version`` when set, else a hash of the
target's code: the callable's module file, or the files a command names in the project.
Set ``target.version`` when the agent changes in ways its file does not show (a model
named in the environment, a dependency). Error answers are never kept. Answers live in
``.improver/decisions.sqlite``; ``target.cache: false`` turns the cache off.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
from pathlib import Path

import orjson

from improver.errors import StoreError
from improver.experiments import read_tree, tree_hash
from improver.project import TargetSpec
from improver.runners import ERROR, Progress, TargetRunner

LOOKUP = 500  # keys per query


def fingerprint(spec: TargetSpec, root: Path) -> str:
    """What identifies the agent's behaviour: its declared version, else a hash of its code."""
    if spec.version:
        return f"version:{spec.version}"
    digest = hashlib.sha256()
    if spec.callable:
        from improver.runners.local import load_callable

        load_callable(spec, root)  # puts the target's folders on sys.path
        module = importlib.util.find_spec(spec.callable.split(":", 1)[0])
        digest.update(spec.callable.encode())
        if module is not None and module.origin and Path(module.origin).is_file():
            digest.update(Path(module.origin).read_bytes())
    else:
        for part in spec.command or []:
            digest.update(part.encode() + b"\0")
            path = root / part
            if "{config_dir}" not in part and path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class DecisionCache:
    """Answers by key in one SQLite table."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), check_same_thread=False)
            self.db.execute("CREATE TABLE IF NOT EXISTS answers (key BLOB PRIMARY KEY, answer BLOB NOT NULL) WITHOUT ROWID")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot open the decision cache {path}: {error}; delete it (it only saves reruns)") from error

    def get(self, keys: list[bytes]) -> dict[bytes, dict]:
        found = {}
        distinct = list(dict.fromkeys(keys))
        for start in range(0, len(distinct), LOOKUP):
            part = distinct[start:start + LOOKUP]
            rows = self.db.execute(f"SELECT key, answer FROM answers WHERE key IN ({','.join('?' * len(part))})", part)
            found.update((key, orjson.loads(answer)) for key, answer in rows)
        return found

    def put(self, items: list[tuple[bytes, dict]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?)", [(k, orjson.dumps(a)) for k, a in items])


class CachedRunner:
    """Any runner, with answers already decided taken from the cache; counts hits and reruns."""

    def __init__(self, inner: TargetRunner, cache: DecisionCache, agent: str):
        self.inner, self.cache, self.agent = inner, cache, agent
        self.hits = self.reruns = 0

    def keys(self, cases: list[dict], config_dir: Path) -> list[bytes]:
        prefix = f"{self.agent}\0{tree_hash(read_tree(Path(config_dir)))}\0".encode()
        option = orjson.OPT_NON_STR_KEYS
        return [hashlib.sha256(prefix + orjson.dumps(case, option=option, default=str)).digest()[:16] for case in cases]

    def run(self, cases: list[dict], config_dir: Path, progress: Progress | None = None) -> list[dict]:
        keys = self.keys(cases, config_dir)
        found = self.cache.get(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        self.hits += len(cases) - len(missing)
        self.reruns += len(missing)
        if progress and len(cases) > len(missing):
            progress(len(cases) - len(missing))
        answers = self.inner.run([cases[i] for i in missing], config_dir, progress) if missing else []
        self.cache.put([(keys[i], a) for i, a in zip(missing, answers) if a["decision"] != ERROR])
        fresh = dict(zip(missing, answers))
        return [fresh[i] if i in fresh else dict(found[key]) for i, key in enumerate(keys)]

    def close(self) -> None:
        self.cache.db.close()
        getattr(self.inner, "close", lambda: None)()
