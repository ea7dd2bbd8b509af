"""Reviewer reasoning as text: assign untagged notes to known precedents, cluster the rest.

Notes are deduplicated first (reviewers reuse phrasings), vectorised with TF-IDF over
1–2-grams, reduced with a randomized SVD and grouped by average-linkage clustering on
cosine distance. Large note sets are clustered on a sample and the rest assigned to the
nearest cluster centre, so memory stays bounded. Each step computes what scikit-learn's
``TfidfVectorizer``, ``TruncatedSVD`` and ``AgglomerativeClustering`` give (the same
operations in the same order, on numpy and scipy; a test compares them), without
importing scikit-learn (over 1 s, with pandas and scipy.stats). scipy is imported when
first needed, or ahead of that in the background (``prefetch``).
"""
from __future__ import annotations

import importlib
import re
import sys
import threading
from collections import Counter, defaultdict
from heapq import heappush, heappushpop

import numpy as np

from improver.features import STOPWORDS, words

MAX_CLUSTERED_NOTES = 3000
SCIPY_MODULES = ("scipy.sparse", "scipy.linalg", "scipy.cluster.hierarchy")
TOKEN = re.compile(r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
_prefetch: threading.Thread | None = None


def prefetch() -> None:
    """Start importing scipy's parts used here in a background thread, for a caller about to wait
    on something else (a cycle's baseline waits on the target's worker processes). The functions
    here wait for it to finish."""
    global _prefetch
    if _prefetch is None and not all(name in sys.modules for name in SCIPY_MODULES):
        _prefetch = threading.Thread(target=_import_scipy, name="improver-import-scipy", daemon=True)
        _prefetch.start()


def _import_scipy() -> None:
    try:
        for name in SCIPY_MODULES:
            importlib.import_module(name)
    except Exception:  # noqa: BLE001 - the caller's own import raises it again, where it can be reported
        pass


def _imported() -> None:
    """Wait for a ``prefetch`` under way (one import at a time of the same modules)."""
    if _prefetch is not None:
        _prefetch.join()


def _terms(note: str) -> list[str]:
    """A note's words of two letters or more, lowercased, stop words left out; then its word pairs."""
    tokens = [w for w in TOKEN.findall(note.lower()) if w not in STOPWORDS]
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


class Tfidf:
    """TF-IDF of 1–2-grams fitted on a corpus: sublinear term counts (1 + log), smoothed inverse
    document frequency, rows of unit length; ``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)``
    value for value. ValueError when the corpus has no terms."""

    def __init__(self, corpus: list[str]):
        vocabulary: dict[str, int] = {}
        counts = self._counts(corpus, vocabulary, grow=True)
        if not vocabulary:
            raise ValueError("empty vocabulary; the notes hold only stop words")
        order = np.empty(len(vocabulary), dtype=counts.indices.dtype)  # first seen -> alphabetical
        for position, (term, seen) in enumerate(sorted(vocabulary.items())):
            vocabulary[term] = position
            order[seen] = position
        counts.indices = order.take(counts.indices, mode="clip")
        counts.has_sorted_indices = False  # as they are now
        self.vocabulary = vocabulary
        df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64) + 1.0
        self.idf = np.full_like(df, fill_value=counts.shape[0] + 1, dtype=np.float64)
        self.idf /= df
        np.log(self.idf, out=self.idf)
        self.idf += 1.0
        self.fitted = self._weigh(counts)

    @staticmethod
    def _counts(notes: list[str], vocabulary: dict[str, int], grow: bool):
        from scipy import sparse

        indices: list[int] = []
        values: list[int] = []
        indptr = [0]
        for note in notes:
            counter: dict[int, int] = {}
            for term in _terms(note):
                index = vocabulary.get(term)
                if index is None:
                    if not grow:
                        continue
                    index = vocabulary[term] = len(vocabulary)
                counter[index] = counter.get(index, 0) + 1
            indices.extend(counter)
            values.extend(counter.values())
            indptr.append(len(indices))
        matrix = sparse.csr_matrix((values, indices, indptr), shape=(len(indptr) - 1, len(vocabulary)),
                                   dtype=np.float64)
        matrix.sort_indices()
        return matrix

    def _weigh(self, matrix):
        """The counts (changed in place) as TF-IDF."""
        np.log(matrix.data, matrix.data)
        matrix.data += 1.0
        matrix.data *= self.idf[matrix.indices]
        for row in range(matrix.shape[0]):  # each row to unit length, summed in stored order as scikit-learn does
            start, end = matrix.indptr[row], matrix.indptr[row + 1]
            total = 0.0
            for value in matrix.data[start:end].tolist():
                total += value * value
            if total != 0.0:
                matrix.data[start:end] /= np.sqrt(total)
        return matrix

    def transform(self, notes: list[str]):
        return self._weigh(self._counts(notes, self.vocabulary, grow=False))


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def assign_to_precedents(tagged: dict[str, list[str]], untagged: list[str], min_similarity: float = 0.3,
                         min_margin: float = 0.05) -> list[str | None]:
    """For each untagged note, the precedent whose tagged notes it reads like, or None."""
    if not tagged or not untagged:
        return [None] * len(untagged)
    _imported()
    names = sorted(tagged)
    corpus = sorted({note for notes in tagged.values() for note in notes} | set(untagged))
    try:
        tfidf = Tfidf(corpus)
    except ValueError:  # nothing but stop words
        return [None] * len(untagged)
    centres = _normalise(np.vstack([np.asarray(tfidf.transform(sorted(set(tagged[n]))).mean(axis=0)) for n in names]))
    distinct = sorted(set(untagged))
    similarity = _normalise(tfidf.transform(distinct).toarray()) @ centres.T
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
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small matrices: BLAS threads only contend with the target's workers and other load
        return _cluster_distinct(notes, distinct, distance_threshold, seed)


def _cluster_distinct(notes: list[str], distinct: list[str], distance_threshold: float, seed: int) -> list[int]:
    try:
        matrix = Tfidf(distinct).fitted
    except ValueError:
        return [-1] * len(notes)
    if matrix.shape[1] > 3 and len(distinct) > 3:
        dense = reduced(matrix, min(50, matrix.shape[1] - 1, len(distinct) - 1), seed)
    else:
        dense = matrix.toarray()
    dense = _normalise(dense)
    rng = np.random.default_rng(seed)
    sample = np.arange(len(distinct)) if len(distinct) <= MAX_CLUSTERED_NOTES else rng.choice(
        len(distinct), MAX_CLUSTERED_NOTES, replace=False)
    labels_sample = average_linkage_clusters(dense[sample], distance_threshold)
    centres = _normalise(np.vstack([dense[sample][labels_sample == k].mean(axis=0) for k in range(labels_sample.max() + 1)]))
    labels = np.argmax(dense @ centres.T, axis=1)
    labels[sample] = labels_sample
    by_note = dict(zip(distinct, labels.tolist()))
    return [by_note.get(n, -1) for n in notes]


def reduced(matrix, components: int, seed: int, iterations: int = 5, oversamples: int = 10) -> np.ndarray:
    """The rows of a sparse matrix projected on its top singular vectors, by randomized SVD (Halko et
    al.: LU-normalised power iterations from a seeded Gaussian start, signs fixed by each singular
    vector's largest entry): ``TruncatedSVD(components, random_state=seed).fit_transform``."""
    from scipy import linalg

    transpose = matrix.shape[0] < matrix.shape[1]
    m = matrix.T if transpose else matrix
    q = np.random.RandomState(seed).normal(size=(m.shape[1], components + oversamples))
    for _ in range(iterations):
        q, _ = linalg.lu(m @ q, permute_l=True, check_finite=False)
        q, _ = linalg.lu(m.T @ q, permute_l=True, check_finite=False)
    q, _ = linalg.qr(m @ q, mode="economic", check_finite=False)
    u_hat, _, vt = linalg.svd(q.T @ m, full_matrices=False, lapack_driver="gesdd")
    u = q @ u_hat
    vt = u[:, :components].T if transpose else vt[:components, :]
    largest = np.argmax(np.abs(vt), axis=1)
    signs = np.sign(np.take(np.reshape(vt, (-1,)), largest + np.arange(vt.shape[0]) * vt.shape[1], axis=0))
    vt *= signs[:, np.newaxis]
    return matrix @ vt.T


def average_linkage_clusters(points: np.ndarray, distance_threshold: float) -> np.ndarray:
    """Flat clusters of the average-linkage tree on cosine distance, cut below ``distance_threshold``,
    numbered as ``AgglomerativeClustering(distance_threshold=..., metric="cosine", linkage="average")``
    numbers them."""
    from scipy.cluster import hierarchy

    tree = hierarchy.linkage(points, method="average", metric="cosine")
    children = tree[:, :2].astype(int, copy=False)
    leaves = len(points)
    clusters = int(np.count_nonzero(tree[:, 2] >= distance_threshold)) + 1
    nodes = [-(int(max(children[-1])) + 1)]
    for _ in range(clusters - 1):  # split the highest merges, as scikit-learn's _hc_cut does
        left, right = children[-nodes[0] - leaves]
        heappush(nodes, -int(left))
        heappushpop(nodes, -int(right))
    labels = np.zeros(leaves, dtype=np.intp)
    for label, node in enumerate(nodes):
        labels[_leaves_under(-node, children, leaves)] = label
    return labels


def _leaves_under(node: int, children: np.ndarray, leaves: int) -> list[int]:
    found, pending = [], [node]
    while pending:
        current = pending.pop()
        if current < leaves:
            found.append(current)
        else:
            pending.extend(children[current - leaves].tolist())
    return found


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
