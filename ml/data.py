"""Tenant data: data sets that ship inside scikit-learn (and a generated text corpus), split
into tenants deterministically, each tenant with its own distribution.

Nothing is downloaded: ``classical`` tenants share scikit-learn's bundled breast-cancer set,
``cv`` tenants its bundled digits (8x8 images), ``nlp`` tenants a corpus generated here from
a fixed vocabulary. Every source row goes to exactly one tenant of its kind; each tenant
then gets its own label mix and its own feature shift (a different instrument, a different
population), so a tenant-specific model and a shared one really differ.

The raw data of a tenant carries identifying columns (``customer_id``, ``email``) beside the
features, as real tenant data does. They never reach a model: :meth:`TenantData.features`
is all a trainer sees, and :func:`shared_training_set` drops them before anything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.datasets import load_breast_cancer, load_digits

from tenancy.spec import ModelKind, PlatformSpec

#: Arrays of any dtype: numpy's dtype generics add noise, not safety, in numeric code.
Array = NDArray[Any]
IDENTIFYING_COLUMNS = ("customer_id", "email")
TEXT_COLUMN = "text"


def stable_seed(*parts: str) -> int:
    """A seed from names that is the same in every process (``hash()`` is salted)."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class TenantData:
    """One tenant's raw rows: features, labels, identifying columns and provenance."""

    tenant: str
    kind: ModelKind
    feature_names: tuple[str, ...]
    X: Array
    y: Array
    classes: tuple[int, ...]
    # Provenance of every row: "<tenant>:<source row index>".
    row_ids: Array
    identifiers: dict[str, Array] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """Content-addressed data version: changes when any row or label changes."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.y).tobytes())
        digest.update("|".join(self.row_ids.tolist()).encode())
        if self.X.dtype == object:
            digest.update("\n".join(str(v) for v in self.X.ravel()).encode())
        else:
            digest.update(np.ascontiguousarray(self.X).tobytes())
        return f"{self.tenant}-{self.kind}-{digest.hexdigest()[:12]}"

    def __len__(self) -> int:
        return len(self.y)

    def features(self) -> Array:
        """What a model sees: features only, never identifying columns."""
        return self.X

    def take(self, index: Array) -> TenantData:
        return replace(
            self,
            X=self.X[index],
            y=self.y[index],
            row_ids=self.row_ids[index],
            identifiers={k: v[index] for k, v in self.identifiers.items()},
        )

    def split(self, holdout_fraction: float = 0.25) -> tuple[TenantData, TenantData]:
        """Deterministic train / held-out split, the same in every run."""
        rng = np.random.default_rng(stable_seed("split", self.tenant, self.kind))
        order = rng.permutation(len(self))
        cut = round(len(self) * (1 - holdout_fraction))
        return self.take(np.sort(order[:cut])), self.take(np.sort(order[cut:]))


@dataclass(frozen=True)
class TrainingSet:
    """Rows assembled for one training run, with where each row came from."""

    kind: ModelKind
    feature_names: tuple[str, ...]
    X: Array
    y: Array
    classes: tuple[int, ...]
    row_ids: Array
    contributors: tuple[str, ...]
    data_version: str
    identifiers: dict[str, Array] = field(default_factory=dict)

    def row_tenants(self) -> set[str]:
        return {row.split(":", 1)[0] for row in self.row_ids.tolist()}


def tenant_training_set(data: TenantData) -> TrainingSet:
    return TrainingSet(
        data.kind,
        data.feature_names,
        data.features(),
        data.y,
        data.classes,
        data.row_ids,
        (data.tenant,),
        data.version,
    )


def shared_training_set(parts: Sequence[TenantData], consenting: set[str]) -> TrainingSet:
    """Rows of consenting tenants only, identifying columns dropped, provenance kept.

    Raises ``ValueError`` if a part belongs to a tenant that did not consent, so a caller
    bug cannot leak rows into a shared model."""
    if not parts:
        raise ValueError("a shared model needs at least one consenting tenant's data")
    refused = sorted({p.tenant for p in parts} - consenting)
    if refused:
        raise ValueError(f"tenant(s) without consent to shared training: {', '.join(refused)}")
    kinds = {p.kind for p in parts}
    if len(kinds) != 1:
        raise ValueError(f"one shared model per model kind, got {sorted(kinds)}")
    ordered = sorted(parts, key=lambda p: p.tenant)
    versions = "+".join(p.version for p in ordered)
    return TrainingSet(
        kind=ordered[0].kind,
        feature_names=ordered[0].feature_names,
        X=np.concatenate([p.features() for p in ordered]),
        y=np.concatenate([p.y for p in ordered]),
        classes=ordered[0].classes,
        row_ids=np.concatenate([p.row_ids for p in ordered]),
        contributors=tuple(p.tenant for p in ordered),
        data_version=f"shared-{hashlib.sha256(versions.encode()).hexdigest()[:12]}",
        identifiers={},  # never carried into shared training
    )


# --- sources ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    X: Array
    y: Array
    feature_names: tuple[str, ...]
    classes: tuple[int, ...]


@cache
def _tabular() -> _Source:
    bunch = load_breast_cancer()
    names = tuple(name.replace(" ", "_") for name in bunch.feature_names)
    return _Source(bunch.data.astype(np.float32), bunch.target.astype(np.int64), names, (0, 1))


@cache
def _digits() -> _Source:
    bunch = load_digits()
    names = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))
    return _Source(
        bunch.data.astype(np.float32), bunch.target.astype(np.int64), names, tuple(range(10))
    )


TOPICS = ("billing", "technical", "account")
_TOPIC_WORDS = {
    "billing": "invoice payment refund charge price subscription card billing receipt credit",
    "technical": "error crash server latency timeout install update bug network restart",
    "account": "password login profile email username reset access verify account security",
}
_FILLER = "the a my please help with about today again since we our need is not".split()  # noqa: SIM905


@cache
def _corpus(documents: int = 1800) -> _Source:
    """A deterministic support-ticket corpus: a topic's words, filler, and noise words of
    the other topics, so that classes overlap as real text does."""
    rng = np.random.default_rng(stable_seed("corpus"))
    texts, labels = [], []
    for index in range(documents):
        label = index % len(TOPICS)
        own = _TOPIC_WORDS[TOPICS[label]].split()
        other = _TOPIC_WORDS[TOPICS[(label + 1 + index % 2) % len(TOPICS)]].split()
        words = [
            *rng.choice(own, size=rng.integers(3, 6)),
            *rng.choice(_FILLER, size=rng.integers(3, 8)),
            *rng.choice(other, size=rng.integers(1, 4)),
        ]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    X = np.array(texts, dtype=object).reshape(-1, 1)  # noqa: N806
    return _Source(X, np.array(labels, dtype=np.int64), (TEXT_COLUMN,), tuple(range(len(TOPICS))))


def _source(kind: ModelKind) -> _Source:
    return {"classical": _tabular, "cv": _digits, "nlp": _corpus}[kind]()


# --- splitting into tenants ---------------------------------------------------------------


def _assign(source: _Source, tenants: Sequence[str], kind: str) -> Array:
    """Each source row to one tenant; each tenant prefers some classes (a label skew)."""
    rng = np.random.default_rng(stable_seed("assign", kind, *tenants))
    preference = rng.dirichlet(np.ones(len(tenants)), size=len(source.classes)) + 0.05
    weights = preference[source.y]
    weights /= weights.sum(axis=1, keepdims=True)
    draws = rng.random(len(source.y))
    return np.minimum((weights.cumsum(axis=1) < draws[:, None]).sum(axis=1), len(tenants) - 1)


def _shift(kind: ModelKind, tenant: str, X: Array) -> Array:  # noqa: N803
    """A tenant's own covariate shift: scaled and offset features (tabular), a brighter or
    darker scanner (digits)."""
    rng = np.random.default_rng(stable_seed("shift", kind, tenant))
    if kind == "classical":
        scale = np.asarray(rng.uniform(0.8, 1.25, size=X.shape[1]), dtype=np.float32)
        offset = (rng.normal(0, 0.15, size=X.shape[1]) * X.std(axis=0)).astype(np.float32)
        return (X * scale + offset).astype(np.float32)
    gain = np.float32(rng.uniform(0.75, 1.15))
    return np.clip(X * gain + np.float32(rng.uniform(-1.0, 1.0)), 0, 16).astype(np.float32)


def _jargon(tenant: str, X: Array) -> Array:  # noqa: N803
    """Text tenants write with their own product names."""
    rng = np.random.default_rng(stable_seed("jargon", tenant))
    words = [f"{tenant}{suffix}" for suffix in ("app", "portal", "plus")]
    out = [f"{text} {rng.choice(words)}" if rng.random() < 0.5 else text for text in X.ravel()]
    return np.array(out, dtype=object).reshape(-1, 1)


def _identifiers(tenant: str, rows: Array) -> dict[str, Array]:
    ids = np.array([f"{tenant}-{row:06d}" for row in rows])
    emails = np.array(
        [f"{hashlib.sha256(i.encode()).hexdigest()[:10]}@{tenant}.example.com" for i in ids]
    )
    return {"customer_id": ids, "email": emails}


def tenant_datasets(spec: PlatformSpec) -> dict[str, TenantData]:
    """Every tenant's raw data for this stack, the same in every run."""
    datasets: dict[str, TenantData] = {}
    for kind in ("classical", "cv", "nlp"):
        tenants = sorted(t.id for t in spec.tenants if t.model_kind == kind)
        if tenants:
            datasets.update(split_kind(kind, tenants))
    return datasets


def split_kind(kind: ModelKind, tenants: Sequence[str]) -> dict[str, TenantData]:
    source = _source(kind)
    owner = _assign(source, tenants, kind)
    result = {}
    for position, tenant in enumerate(tenants):
        rows = np.flatnonzero(owner == position)
        X = source.X[rows]  # noqa: N806
        X = _jargon(tenant, X) if kind == "nlp" else _shift(kind, tenant, X)  # noqa: N806
        result[tenant] = TenantData(
            tenant=tenant,
            kind=kind,
            feature_names=source.feature_names,
            X=X,
            y=source.y[rows],
            classes=source.classes,
            row_ids=np.array([f"{tenant}:{row}" for row in rows]),
            identifiers=_identifiers(tenant, rows),
        )
    return result
