"""The decision cache: wraps any runner, so a case the same agent has already decided
with the same config is answered from disk instead of rerun.

Answers are kept by the agent's fingerprint and the config folder's content hash, each
under a hash of its case. The fingerprint is ``target.version`` when set, else a hash of the
target's code: the callable's module file (every .py file of its package, if in
one), or the files a command names in the project.
Set ``target.version`` when the agent changes in ways its file does not show (a model
named in the environment, a dependency). Error answers are never kept. Answers live in
``.improver/decisions.sqlite``, at most ``target.cache_max_mb`` of them (the least recently
used runs go first); ``target.cache: false`` turns the cache off.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import sqlite3
import time
from pathlib import Path

import orjson

from improver.errors import StoreError
from improver.experiments import read_tree, tree_hash
from improver.project import TargetSpec
from improver.runners import ERROR, Answered, Progress, TargetRunner, run_many


def fingerprint(spec: TargetSpec, root: Path) -> str:
    """What identifies the agent's behaviour: its declared version, else a hash of its code
    (the callable's module file, or every ``.py`` file of its top-level package; the files a
    command names). Found on disk, never imported here: improver's process stays clean."""
    if spec.version:
        return f"version:{spec.version}"
    digest = hashlib.sha256()
    if spec.callable:
        digest.update(spec.callable.encode())
        for path in _code_files(spec, root):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    else:
        for part in spec.command or []:
            digest.update(part.encode() + b"\0")
            path = root / part
            if "{config_dir}" not in part and path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _code_files(spec: TargetSpec, root: Path) -> list[Path]:
    """The files of the callable's module: searched in the project's folders first, then on sys.path."""
    name = spec.callable.split(":", 1)[0]
    folders = ([str((root / spec.python_path).resolve())] if spec.python_path else []) + [str(root.resolve())]
    found, search, package = None, folders, None
    for part in name.split("."):
        found = importlib.machinery.PathFinder.find_spec(part, search)
        if found is None:
            break
        if part == name.split(".")[0] and found.submodule_search_locations:
            package = Path(list(found.submodule_search_locations)[0])
        search = list(found.submodule_search_locations or [])
    if found is None:
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return []
    if found is None or not found.origin or not Path(found.origin).is_file():
        return []
    if package is not None:
        return sorted(package.rglob("*.py"))
    return [Path(found.origin)]


class DecisionCache:
    """Answers by agent and config, one row per run that decided something new, so a run reads
    its config's answers in one query. A row is a JSON object: ``{"answers": [...], "at": {case
    key: index}}`` when a run's answers mostly repeat a few (a rule-based agent's, one per rule
    that decides), each distinct answer stored once; ``{"keys": [...], "answers": [...]}``, an
    answer a case, when most answers have their own reasoning (an LLM's, or texts that name the
    case's amounts): telling equal answers apart there costs more than it saves. Rows written
    as ``{case key: answer}`` still read.

    The cache holds at most ``max_bytes`` of answers (``target.cache_max_mb``): past that, the
    runs whose config was asked for least recently go first (those of configs no experiment uses
    any more, or of an agent whose code has changed since), never the run just stored."""

    def __init__(self, path: Path, max_bytes: float = float("inf")):
        self.path, self.max_bytes = path, max_bytes
        self._asked: set[tuple[str, str]] = set()  # (agent, config) read since the last write: marked used then
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), check_same_thread=False)
            with self.db:
                self.db.execute("CREATE TABLE IF NOT EXISTS runs (agent TEXT NOT NULL, config TEXT NOT NULL, "
                                "answers BLOB NOT NULL, bytes INTEGER, used REAL NOT NULL DEFAULT 0)")
                columns = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
                if "bytes" not in columns:  # made by an improver before the size limit
                    self.db.execute("ALTER TABLE runs ADD COLUMN bytes INTEGER")
                    self.db.execute("ALTER TABLE runs ADD COLUMN used REAL NOT NULL DEFAULT 0")
                    self.db.execute("UPDATE runs SET bytes = length(answers)")
                self.db.execute("CREATE INDEX IF NOT EXISTS runs_by_config ON runs (agent, config)")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot open the decision cache {path}: {error}; delete it (it only saves reruns)") from error

    def get(self, agent: str, config: str) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for (blob,) in self.db.execute("SELECT answers FROM runs WHERE agent = ? AND config = ?", (agent, config)):
            row = orjson.loads(blob)
            if isinstance(row.get("keys"), list) and isinstance(row.get("answers"), list):  # an answer a case
                found.update(zip(row["keys"], row["answers"]))
            elif isinstance(row.get("at"), dict) and isinstance(row.get("answers"), list):
                distinct = row["answers"]
                found.update((key, _own(distinct[i])) for key, i in row["at"].items())
            else:  # written before answers were stored once each
                found.update(row)
        if found:
            self._asked.add((agent, config))
        return found

    def has(self, agent: str, config: str) -> bool:
        """Whether any answer of this agent under this config is kept."""
        return self.db.execute("SELECT 1 FROM runs WHERE agent = ? AND config = ? LIMIT 1", (agent, config)).fetchone() is not None

    def put(self, agent: str, config: str, answers: "dict[str, dict] | Kept") -> None:
        self.put_many([(agent, config, answers)])

    def put_many(self, runs: "list[tuple[str, str, dict[str, dict] | Kept]]") -> None:
        """Several runs' answers (agent, config, {case key: answer} or ``Kept``) in one transaction, with the
        configs read since the last write marked used, and the least recently used runs over the
        size limit removed."""
        rows = [(agent, config, self._row(answers)) for agent, config, answers in runs if answers]
        if not rows and not self._asked:
            return
        used = time.time()
        with self.db:
            self.db.executemany("UPDATE runs SET used = ? WHERE agent = ? AND config = ?",
                                [(used, agent, config) for agent, config in self._asked])
            self._asked.clear()
            if rows:
                self.db.executemany("INSERT INTO runs (agent, config, answers, bytes, used) VALUES (?, ?, ?, ?, ?)",
                                    [(agent, config, blob, len(blob), used) for agent, config, blob in rows])
                self._evict(newest=len(rows))

    def _evict(self, newest: int) -> None:
        total = self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM runs").fetchone()[0]
        if total <= self.max_bytes:
            return
        candidates = self.db.execute("SELECT rowid, bytes FROM runs WHERE rowid NOT IN "
                                     "(SELECT rowid FROM runs ORDER BY rowid DESC LIMIT ?) ORDER BY used, rowid",
                                     (newest,)).fetchall()
        gone = []
        for rowid, size in candidates:
            if total <= self.max_bytes:
                break
            gone.append((rowid,))
            total -= size or 0
        self.db.executemany("DELETE FROM runs WHERE rowid = ?", gone)

    @staticmethod
    def _row(answers: "dict[str, dict] | Kept") -> bytes:
        if isinstance(answers, dict):
            kept = Kept()
            kept.add(list(answers), list(answers.values()))
            answers = kept
        return answers.blob()


ANSWER_KEYS = {"decision", "confidence", "reasoning", "cited"}  # a normalised answer's (``runners.normalise``)
FORM_SAMPLE = 2000  # answers a run's cache row form is judged on (``Kept``)


def _identity(answer: dict):
    """A hashable stand-in for an answer's content: equal answers, equal identities."""
    if answer.keys() == ANSWER_KEYS and type(answer["cited"]) is list:  # most answers: 2.5x the general form's speed
        return answer["decision"], answer["confidence"], answer["reasoning"], tuple(answer["cited"])
    try:
        return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in answer.items())
    except TypeError:  # a value that does not hash (a dict): its JSON
        return orjson.dumps(answer, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)


class Kept:
    """A run's new answers, kept as they come, in the form a cache row stores them (``DecisionCache``):
    each distinct answer once with the index of each case's, or, when most answers have their own
    reasoning, an answer a case. Error answers are never kept. Once FORM_SAMPLE answers have come
    and most had their own reasoning, the rest are kept as they are without telling equal ones
    apart (what that costs an answer is most of what keeping it costs)."""

    def __init__(self):
        self.keys: list[str] = []
        self.answers: list[dict] = []
        self.texts: set = set()  # the distinct reasonings
        self._index: dict = {}  # identity -> position in distinct
        self.distinct: list[dict] | None = []  # None once the answers are kept as they are
        self.at: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, keys: list[str], answers: list[dict]) -> None:
        if self.distinct is None:
            kept = [(key, answer) for key, answer in zip(keys, answers) if answer["decision"] != ERROR]
            self.keys += [key for key, _ in kept]
            self.answers += [answer for _, answer in kept]
            return
        index, distinct, at, texts = self._index, self.distinct, self.at, self.texts
        for key, answer in zip(keys, answers):
            if answer["decision"] == ERROR:
                continue
            self.keys.append(key)
            self.answers.append(answer)
            texts.add(answer.get("reasoning"))
            position = at[key] = index.setdefault(_identity(answer), len(index))
            if position == len(distinct):
                distinct.append(answer)
        if len(self.keys) >= FORM_SAMPLE and self._own_texts():
            self.distinct, self._index, self.at, self.texts = None, {}, {}, set()

    def _own_texts(self) -> bool:
        return len(self.texts) > len(self.keys) // 2  # mostly their own texts (an LLM's, or naming the case's amounts)

    def blob(self) -> bytes:
        if self.distinct is None or self._own_texts():  # as they are
            return orjson.dumps({"keys": self.keys, "answers": self.answers})
        return orjson.dumps({"answers": self.distinct, "at": self.at})


def _key(case: dict) -> str:
    return hashlib.sha256(orjson.dumps(case, option=orjson.OPT_NON_STR_KEYS, default=str)).hexdigest()[:32]


def _own(answer: dict) -> dict:
    """A copy for one case (answers stored once are shared by many): its own dict and lists."""
    own = answer.copy()
    for key, value in answer.items():
        if type(value) is list:
            own[key] = value.copy()
    return own


class CachedRunner:
    """Any runner, with answers already decided taken from the cache; counts hits and reruns."""

    streams = True  # ``run_many`` reports answers as they come (``runners.run_many``)

    def __init__(self, inner: TargetRunner, cache: DecisionCache, agent: str, case_keys: dict | None = None):
        self.inner, self.cache, self.agent = inner, cache, agent
        self.hits = self.reruns = 0
        # id(case) -> (case, key): a cycle asks again for the same cases (shared by the runners of one workspace)
        self.case_keys: dict[int, tuple[dict, str]] = {} if case_keys is None else case_keys

    def keys(self, cases: list[dict]) -> list[str]:
        """A hash of each case's JSON, found once per case object (improver never changes a session's case)."""
        keys = []
        for case in cases:
            known = self.case_keys.get(id(case))
            if known is None or known[0] is not case:
                known = self.case_keys[id(case)] = (case, _key(case))
            keys.append(known[1])
        return keys

    def holds(self, config_dir: Path) -> bool:
        """Whether the cache holds any answer under this config."""
        return self.cache.has(self.agent, tree_hash(read_tree(Path(config_dir))))

    def start(self, config_dir: Path, cases: int) -> None:
        """The inner runner's ``start``, when it has one and the cache holds no answer under this config."""
        start = getattr(self.inner, "start", None)
        if start is not None and not self.holds(config_dir):
            start(config_dir, cases)

    def prepare(self, cases: int) -> None:
        """The inner runner's ``prepare``, when it has one."""
        getattr(self.inner, "prepare", lambda cases: None)(cases)

    def run(self, cases: list[dict], config_dir: Path, progress: Progress | None = None) -> list[dict]:
        return self.run_many([(cases, config_dir)], progress)[0]

    def run_many(self, jobs: list[tuple[list[dict], Path]], progress: Progress | None = None,
                 answered: Answered | None = None) -> list[list[dict]]:
        """Several runs (cases, config folder): the cases not in the cache are rerun together (``run_many``).
        The target's answers are kept for the cache as they come; ``answered`` gets them as they come for
        a job the cache held none of (each case's key found then, while the target works), else each
        job's whole list at the end."""
        plans = []
        for cases, config_dir in jobs:
            config = tree_hash(read_tree(Path(config_dir)))
            found = self.cache.get(self.agent, config)
            keys = self.keys(cases) if found else None
            missing = [i for i, key in enumerate(keys) if key not in found] if found else list(range(len(cases)))
            self.hits += len(cases) - len(missing)
            self.reruns += len(missing)
            if progress and len(cases) > len(missing):
                progress(len(cases) - len(missing))
            plans.append((config, keys, found, missing, Kept()))
        asked = [j for j, plan in enumerate(plans) if plan[3]]

        def came(k: int, start: int, answers: list[dict]) -> None:  # a slice of the k-th rerun job
            j = asked[k]
            _config, keys, _found, missing, kept = plans[j]
            if keys is None:  # nothing was in the cache: the slice is the job's own cases
                kept.add(self.keys(jobs[j][0][start:start + len(answers)]), answers)
                if answered:
                    answered(j, start, answers)
            else:
                kept.add([keys[i] for i in missing[start:start + len(answers)]], answers)

        reran = run_many(self.inner, [([jobs[j][0][i] for i in plans[j][3]], jobs[j][1]) for j in asked], progress, came)
        reran_by_job = dict(zip(asked, reran))
        out = []
        for j, (config, keys, found, missing, kept) in enumerate(plans):
            answers = reran_by_job.get(j, [])
            if keys is None:  # nothing was in the cache: the answers as they came
                out.append(answers)
                continue
            found.update((keys[i], a) for i, a in zip(missing, answers))
            out.append([found[key] for key in keys])
            if answered:
                answered(j, 0, out[-1])
        self.cache.put_many([(self.agent, config, kept) for config, _keys, _found, _missing, kept in plans])
        return out

    def close(self) -> None:
        self.cache.db.close()
        getattr(self.inner, "close", lambda: None)()
