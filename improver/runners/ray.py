"""The Ray backend (``target.runner: ray``, the ``ray`` extra): chunks of cases handed to a
Ray cluster as tasks, each deciding its chunk with the local backend's code.

``target.ray_address`` names the cluster (``ray://host:10001`` or ``auto``); unset, the
Ray already started in this process is used, or a local one is started. The config
folder travels with the tasks as file contents (written once per worker into a
temporary folder named by its hash), so workers need not share a disk with improver;
they must be able to import the target (same image, or a Ray ``runtime_env``). Past
``target.max_error_share`` errors the chunks not done yet are cancelled and the run fails.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from improver.errors import MissingExtraError, RunFailedError
from improver.experiments import read_tree, tree_hash
from improver.project import TargetSpec
from improver.runners import ErrorBudget, Progress
from improver.runners.local import CHUNK, _decide_chunk, load_callable


def _materialised(files: dict[str, str], digest: str) -> Path:
    """The config folder on this worker: written once, then reused by every task with the same hash."""
    folder = Path(tempfile.gettempdir()) / f"improver-config-{digest}"
    if not (folder / ".complete").exists():
        staging = Path(tempfile.mkdtemp(prefix=f"improver-config-{digest}."))
        for name, content in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(content, encoding="utf-8")
        (staging / ".complete").write_text("")
        try:
            staging.rename(folder)
        except OSError:  # another task on this worker won the race; its copy is the same
            pass
    return folder


def _decide_remote(spec: TargetSpec, root: Path, cases: list[dict], files: dict[str, str], digest: str) -> list[dict]:
    return _decide_chunk(spec, root, cases, _materialised(files, digest))


class RayRunner:
    def __init__(self, spec: TargetSpec, root: Path):
        try:
            import ray
        except ImportError as error:
            raise MissingExtraError("target.runner: ray", "ray") from error
        self.ray, self.spec, self.root = ray, spec, root
        load_callable(spec, root)  # fail early, here, with a clear error
        if not ray.is_initialized():
            ray.init(address=spec.ray_address, include_dashboard=False, log_to_driver=False)
        self._task = ray.remote(_decide_remote)

    def run(self, cases: list[dict], config_dir: Path, progress: Progress | None = None) -> list[dict]:
        files = read_tree(Path(config_dir))
        shipped = self.ray.put(files)
        digest = tree_hash(files)
        refs = [self._task.remote(self.spec, self.root, cases[i:i + CHUNK], shipped, digest)
                for i in range(0, len(cases), CHUNK)]
        results: list[dict] = []
        budget = ErrorBudget(len(cases), self.spec.max_error_share)
        try:
            for ref in refs:
                part = self.ray.get(ref)
                budget.add_all(len(results), part)  # past the error share: the chunks not done yet are cancelled
                results += part
                if progress:
                    progress(len(part))
        except RunFailedError:
            for ref in refs:
                self.ray.cancel(ref)
            raise
        return results
