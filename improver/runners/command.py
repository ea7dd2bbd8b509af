"""The command backend: a target command reading cases as JSONL on stdin, writing decisions on stdout."""
from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from improver.errors import TargetError
from improver.project import TargetSpec
from improver.runners import Progress, _error, normalise
from improver.runners.local import CHUNK


class CommandRunner:
    def __init__(self, spec: TargetSpec, root: Path):
        self.spec, self.root = spec, root

    def _run_chunk(self, cases: list[dict], config_dir: Path) -> list[dict]:
        argv = [part.replace("{config_dir}", str(config_dir)) for part in self.spec.command]
        payload = "".join(json.dumps(c) + "\n" for c in cases)
        try:
            done = subprocess.run(argv, input=payload, capture_output=True, text=True, cwd=self.root, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise TargetError(f"cannot run target command {argv[0]!r}: {error}; check target.command in improver.yaml") from error
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        if done.returncode != 0 or len(lines) != len(cases):
            why = f"target command exited {done.returncode} with {len(lines)} lines for {len(cases)} cases: {done.stderr[-300:]}"
            return [_error(why) for _ in cases]
        out = []
        for line in lines:
            try:
                out.append(normalise(json.loads(line)))
            except json.JSONDecodeError:
                out.append(_error(f"target wrote a line that is not JSON: {line[:100]}"))
        return out

    def run(self, cases: list[dict], config_dir: Path, progress: Progress | None = None) -> list[dict]:
        chunks = [cases[i:i + CHUNK * 5] for i in range(0, len(cases), CHUNK * 5)]
        results: list[dict] = []
        with ThreadPoolExecutor(max_workers=self.spec.workers) as pool:
            for part in pool.map(lambda c: self._run_chunk(c, config_dir), chunks):
                results += part
                if progress:
                    progress(len(part))
        return results
