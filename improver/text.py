"""Reviewer reasoning as text: assign untagged notes to known precedents, cluster the rest.

Notes are deduplicated first (reviewers reuse phrasings), vectorised with TF-IDF over
1–2-grams, reduced with SVD and grouped by agglomerative clustering on cosine
distance. Large note sets are clustered on a sample and the rest assigned to the
nearest cluster centre, so memory stays bounded. scikit-learn is imported when first needed,
or ahead of that in the background (``prefetch``) while a cycle waits on its baseline rerun.
"""
from __future__ import annotations

import importlib
import sys
import threading
from collections import Counter, defaultdict

import numpy as np

from improver.features import STOPWORDS, words

MAX_CLUSTERED_NOTES = 3000
SKLEARN_MODULES = ("sklearn.feature_extraction.text", "sklearn.decomposition", "sklearn.cluster")
_prefetch: threading.Thread | None = None


def prefetch() -> None:
    """Start importing scikit-learn (about 2 s) in a background thread, for a caller about to
    wait on something else (a cycle's baseline waits on the target's worker processes): the
    clustering then needs no import of its own. The functions here wait for it to finish."""
    global _prefetch
    if _prefetch is None and not all(name in sys.modules for name in SKLEARN_MODULES):
        _prefetch = threading.Thread(target=_import_sklearn, name="improver-import-sklearn", daemon=True)
        _prefetch.start()


def _import_sklearn() -> None:
    try:
        for name in SKLEARN_MODULES:
            importlib.import_module(name)
    except Exception:  # noqa: BLE001 - the caller's own import raises it again, where it can be reported
        pass


def _imported() -> None:
    """Wait for a ``prefetch`` under way (one import at a time of the same modules)."""
    if _prefetch is not None:
        _prefetch.join()


def _vectorizer():
    _imported()
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), stop_words=sorted(STOPWORDS), min_df=1, sublinear_tf=True,
                           token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def assign_to_precedents(tagged: dict[str, list[str]], untagged: list[str], min_similarity: float = 0.3,
                         min_margin: float = 0.05) -> list[str | None]:
    """For each untagged note, the precedent whose tagged notes it reads like, or None."""
    if not tagged or not untagged:
        return [None] * len(untagged)
    names = sorted(tagged)
    corpus = sorted({note for notes in tagged.values() for note in notes} | set(untagged))
    try:
        vectorizer = _vectorizer().fit(corpus)
    except ValueError:  # nothing but stop words
        return [None] * len(untagged)
    centres = _normalise(np.vstack([np.asarray(vectorizer.transform(sorted(set(tagged[n]))).mean(axis=0))
                                    for n in names]))
    distinct = sorted(set(untagged))
    similarity = _normalise(vectorizer.transform(distinct).toarray()) @ centres.T
    answer: dict[str, str | None] = {}
    for note, row in zip(distinct, similarity):
        order = np.argsort(-row)
        top, second = row[order[0]], (row[order[1]] if len(order) > 1 else 0.0)
        answer[note] = names[order[0]] if top >= min_similarity and top - second >= min_margin else None
    return [answer[note] for note in untagged]


def cluster_notes(notes: list[str], distance_threshold: float = 0.7, seed: int = 0) -> list[int]:
    """A cluster label for each note (notes with no usable words get -1)."""
    distinct = sorted({n for n in notes if words(n)})
    if len(distinct) < 2:
        return [0 if n in distinct else -1 for n in notes]
    _imported()
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    with threadpool_limits(1):  # small matrices: BLAS threads only contend with the target's workers and other load
        return _cluster_distinct(notes, distinct, distance_threshold, seed)


def _cluster_distinct(notes: list[str], distinct: list[str], distance_threshold: float, seed: int) -> list[int]:
    from sklearn.cluster import AgglomerativeClustering  # imported only when there is something to cluster (~1 s)
    from sklearn.decomposition import TruncatedSVD

    try:
        matrix = _vectorizer().fit_transform(distinct)
    except ValueError:
        return [-1] * len(notes)
    if matrix.shape[1] > 3 and len(distinct) > 3:
        dense = TruncatedSVD(n_components=min(50, matrix.shape[1] - 1, len(distinct) - 1), random_state=seed).fit_transform(matrix)
    else:
        dense = matrix.toarray()
    dense = _normalise(dense)
    rng = np.random.default_rng(seed)
    sample = np.arange(len(distinct)) if len(distinct) <= MAX_CLUSTERED_NOTES else rng.choice(
        len(distinct), MAX_CLUSTERED_NOTES, replace=False)
    labels_sample = AgglomerativeClustering(n_clusters=None, distance_threshold=distance_threshold, metric="cosine",
                                            linkage="average").fit_predict(dense[sample])
    centres = _normalise(np.vstack([dense[sample][labels_sample == k].mean(axis=0) for k in range(labels_sample.max() + 1)]))
    labels = np.argmax(dense @ centres.T, axis=1)
    labels[sample] = labels_sample
    by_note = dict(zip(distinct, labels.tolist()))
    return [by_note.get(n, -1) for n in notes]


def cluster_name(notes: list[str], size: int = 3) -> str:
    """A slug from the words the notes share most (``low-risk-spend``)."""
    frequency: Counter = Counter()
    for note in set(notes):
        frequency.update(w for w in words(note) if w.isalpha())
    top = sorted(frequency, key=lambda w: (-frequency[w], w))[:size]
    return "-".join(top) or "unnamed"


def representative_quotes(notes: list[str], limit: int = 3) -> list[str]:
    """The most repeated distinct notes, most common first."""
    return [note for note, _ in Counter(n for n in notes if n).most_common(limit)]


def group_indices(labels: list) -> dict:
    groups: dict = defaultdict(list)
    for index, label in enumerate(labels):
        groups[label].append(index)
    return groups
