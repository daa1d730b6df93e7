"""Deterministic multi-canvas interaction logs that behave like real ones.

The generator writes the raw logs a recommender would collect from four canvases (home, related,
search, category) as five tables: ``users``, ``items``, ``requests``, ``impressions`` and
``engagements``. The same seed always gives the same bytes.

Generative model
----------------
* **Items** belong to one of ``n_categories`` categories. Each item has a latent vector (its
  category's centroid plus noise), a base popularity (log-normal, so a few items are very popular),
  a title of three tokens (two from its category's vocabulary, one from a shared vocabulary) and
  the set of countries it is available in.
* **Users** have a latent preference vector: a mix of one or two category centroids plus noise.
  This preference is SHARED by every canvas, so what a user does on one canvas tells a model about
  the others. Users have a country, a device and an activity level (log-normal).
* **Requests** pick a canvas with unequal traffic (home 45%, search 30%, related 15%, category 10%
  by default), a user in proportion to activity, and a time over ``days`` days. Outside ``home``
  a share of requests is logged out (the log has no ``user_id``; the person still has preferences).
  Each canvas has its own context:
  - related: a source item the user would plausibly look at;
  - search: a query of one or two tokens from the vocabulary of a category the user likes;
  - category: a category the user likes.
* **Candidates**: each request shows 10-30 distinct items, as a first-stage retriever would:
  popular items plus canvas-specific ones (same category as the source item, items of the query's
  category, items of the browsed category).
* **Engagement**: utility = a_canvas * <user, item> + b_canvas * canvas_signal + 0.3 * log(pop)
  + Gumbel noise, where the canvas signal is
  - home: none (personal preference only),
  - related: cosine similarity of source and candidate latent vectors,
  - search: share of query tokens found in the candidate's title,
  - category: 1 if the candidate belongs to the browsed category.
  A candidate is examined with probability ``1 / (1 + position) ** 0.6`` (position bias), clicked
  if examined and its utility passes a canvas threshold, and converts after a click with a
  probability that rises with utility and is zero where the item is not available in the user's
  country. Clicks follow the request by seconds, conversions by minutes.

Dirty rows
----------
``dirty_share`` of requests and impressions are corrupted the way real logs are: a NULL id, an
unknown canvas (``promo``), an unparseable time. The dbt project must quarantine them, not drop them.

Output is written in chunks of requests, so memory stays bounded whatever the number of rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ranker.errors import UnirankError

logger = logging.getLogger(__name__)

CANVASES: tuple[str, ...] = ("home", "search", "related", "category")
COUNTRIES: tuple[str, ...] = ("US", "GB", "DE", "FR", "BR", "IN")
DEVICES: tuple[str, ...] = ("ios", "android", "web")
TABLES: tuple[str, ...] = ("users", "items", "requests", "impressions", "engagements")
_SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ru",
    "te",
    "so",
    "na",
    "vi",
    "de",
    "po",
    "ze",
    "fu",
    "ba",
    "ri",
    "ol",
    "an",
)
_STRING = pa.string()
# Fixed schemas, so every chunk (even one with no search request or no conversion) writes the same
# column types. Raw logs are text, as collected: staging casts them.
SCHEMAS: dict[str, pa.Schema] = {
    "users": pa.schema({"user_id": _STRING, "country": _STRING, "device": _STRING}),
    "items": pa.schema(
        {"item_id": _STRING, "title": _STRING, "category": _STRING, "available_countries": _STRING}
    ),
    "requests": pa.schema(
        {
            "request_id": _STRING,
            "canvas": _STRING,
            "user_id": _STRING,
            "country": _STRING,
            "device": _STRING,
            "source_item_id": _STRING,
            "query_text": _STRING,
            "category": _STRING,
            "requested_at": _STRING,
        }
    ),
    "impressions": pa.schema({"request_id": _STRING, "item_id": _STRING, "position": pa.int32()}),
    "engagements": pa.schema(
        {"request_id": _STRING, "item_id": _STRING, "event_type": _STRING, "event_at": _STRING}
    ),
}

# Per-canvas weights of the shared preference (a) and the canvas signal (b), and click thresholds.
_PREFERENCE_WEIGHT = {"home": 1.6, "related": 0.8, "search": 0.6, "category": 1.0}
_SIGNAL_WEIGHT = {"home": 0.0, "related": 2.0, "search": 2.5, "category": 1.2}
_CLICK_THRESHOLD = {"home": 2.2, "related": 2.4, "search": 2.4, "category": 2.7}


class SimulationError(UnirankError, ValueError):
    """The simulation was asked for something it cannot produce."""


@dataclass(frozen=True)
class SimulationConfig:
    """What to generate. ``n_impressions`` is a target; the result is within a few percent."""

    n_impressions: int = 150_000
    seed: int = 7
    n_categories: int = 12
    latent_dim: int = 8
    days: int = 42
    start: datetime = datetime(2026, 1, 5, tzinfo=timezone.utc)
    canvas_shares: dict[str, float] = field(
        default_factory=lambda: {"home": 0.45, "search": 0.30, "related": 0.15, "category": 0.10}
    )
    min_candidates: int = 10
    max_candidates: int = 30
    logged_out_share: float = 0.25
    dirty_share: float = 0.002
    chunk_requests: int = 50_000

    def __post_init__(self) -> None:
        if self.n_impressions < 1_000:
            raise SimulationError(f"n_impressions must be at least 1000, got {self.n_impressions}")
        if set(self.canvas_shares) != set(CANVASES):
            raise SimulationError(
                f"canvas_shares must name exactly {sorted(CANVASES)}, got {sorted(self.canvas_shares)}"
            )
        if any(share <= 0 for share in self.canvas_shares.values()):
            raise SimulationError(f"canvas shares must be positive, got {self.canvas_shares}")
        if not 1 <= self.min_candidates <= self.max_candidates:
            raise SimulationError("need 1 <= min_candidates <= max_candidates")
        if not 0 <= self.dirty_share < 0.5:
            raise SimulationError(f"dirty_share must be in [0, 0.5), got {self.dirty_share}")

    @property
    def n_requests(self) -> int:
        mean_candidates = (self.min_candidates + self.max_candidates) / 2
        return max(100, round(self.n_impressions / mean_candidates))

    @property
    def n_users(self) -> int:
        return max(300, self.n_requests // 5)

    @property
    def n_items(self) -> int:
        return max(400, min(60_000, self.n_requests // 8))


@dataclass(frozen=True)
class _World:
    """Users and items: drawn once, shared by every chunk of requests."""

    item_category: np.ndarray
    item_vectors: np.ndarray
    item_log_pop: np.ndarray
    item_pop_p: np.ndarray
    item_tokens: np.ndarray  # (n_items, 3) token ids
    item_countries: np.ndarray  # (n_items, n_countries) bool
    category_items: list[np.ndarray]
    category_vocab: np.ndarray  # (n_categories, words_per_category) token ids
    centroids: np.ndarray
    user_vectors: np.ndarray
    user_country: np.ndarray
    user_device: np.ndarray
    user_activity_p: np.ndarray
    vocabulary: list[str]
    category_names: list[str]


def _make_vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        n = int(rng.integers(2, 4))
        word = "".join(_SYLLABLES[i] for i in rng.integers(0, len(_SYLLABLES), n))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _build_world(config: SimulationConfig, rng: np.random.Generator) -> _World:
    n_cat, dim = config.n_categories, config.latent_dim
    words_per_category, shared_words = 10, 30
    vocabulary = _make_vocabulary(rng, n_cat * words_per_category + shared_words + n_cat)
    category_names = vocabulary[-n_cat:]
    category_vocab = np.arange(n_cat * words_per_category).reshape(n_cat, words_per_category)

    centroids = rng.normal(size=(n_cat, dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)

    n_items = config.n_items
    item_category = rng.integers(0, n_cat, n_items)
    item_vectors = centroids[item_category] + 0.45 * rng.normal(size=(n_items, dim))
    item_vectors /= np.linalg.norm(item_vectors, axis=1, keepdims=True)
    item_log_pop = rng.normal(0.0, 1.0, n_items)
    pop = np.exp(item_log_pop)
    item_pop_p = pop / pop.sum()
    own_words = rng.integers(0, words_per_category, (n_items, 2))
    item_tokens = np.column_stack(
        [
            category_vocab[item_category, own_words[:, 0]],
            category_vocab[item_category, own_words[:, 1]],
            n_cat * words_per_category + rng.integers(0, shared_words, n_items),
        ]
    )
    item_countries = rng.random((n_items, len(COUNTRIES))) < 0.8
    category_items = [np.flatnonzero(item_category == c) for c in range(n_cat)]
    for c, members in enumerate(category_items):
        if members.size == 0:  # every category needs items; move one in
            category_items[c] = np.array([c % n_items])
            item_category[c % n_items] = c

    n_users = config.n_users
    first = rng.integers(0, n_cat, n_users)
    second = rng.integers(0, n_cat, n_users)
    mix = rng.random(n_users)[:, None]
    user_vectors = mix * centroids[first] + (1 - mix) * centroids[second]
    user_vectors += 0.35 * rng.normal(size=(n_users, dim))
    user_vectors /= np.linalg.norm(user_vectors, axis=1, keepdims=True)
    activity = np.exp(rng.normal(0.0, 1.0, n_users))
    return _World(
        item_category=item_category,
        item_vectors=item_vectors,
        item_log_pop=item_log_pop,
        item_pop_p=item_pop_p,
        item_tokens=item_tokens,
        item_countries=item_countries,
        category_items=category_items,
        category_vocab=category_vocab,
        centroids=centroids,
        user_vectors=user_vectors,
        user_country=rng.integers(0, len(COUNTRIES), n_users),
        user_device=rng.integers(0, len(DEVICES), n_users),
        user_activity_p=activity / activity.sum(),
        vocabulary=vocabulary,
        category_names=category_names,
    )


def _softmax_choice(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """One index per row of ``logits``, drawn with probability softmax(row) (Gumbel-max trick)."""
    return np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)


def _sample_from_category(
    rng: np.random.Generator, world: _World, categories: np.ndarray, width: int
) -> np.ndarray:
    sizes = np.array([len(m) for m in world.category_items])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.concatenate(world.category_items)
    picks = (rng.random((categories.size, width)) * sizes[categories][:, None]).astype(np.int64)
    return flat[offsets[categories][:, None] + picks]


def _dedupe_rows(rng: np.random.Generator, candidates: np.ndarray, n_items: int) -> np.ndarray:
    """Replace repeated items within a row by popular-independent random items until unique."""
    for _ in range(20):
        order = np.argsort(candidates, axis=1, kind="stable")
        sorted_rows = np.take_along_axis(candidates, order, axis=1)
        repeated = np.zeros_like(candidates, dtype=bool)
        repeated_sorted = np.zeros_like(sorted_rows, dtype=bool)
        repeated_sorted[:, 1:] = sorted_rows[:, 1:] == sorted_rows[:, :-1]
        np.put_along_axis(repeated, order, repeated_sorted, axis=1)
        if not repeated.any():
            break
        candidates[repeated] = rng.integers(0, n_items, int(repeated.sum()))
    return candidates


def _format_times(epoch_seconds: np.ndarray) -> np.ndarray:
    if epoch_seconds.size == 0:  # numpy's string functions refuse empty arrays
        return np.array([], dtype=str)
    stamps = epoch_seconds.astype("datetime64[s]")
    return np.char.replace(np.datetime_as_string(stamps, unit="s"), "T", " ")


def _where_else_null(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` where ``mask`` holds, None (a NULL in the log) elsewhere."""
    result = values.astype(object)
    result[~mask] = None
    return result


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    if numbers.size == 0:  # numpy's string functions refuse empty arrays
        return np.array([], dtype=str)
    return np.char.add(prefix, np.char.zfill(numbers.astype(str), width))


def _users_table(world: _World) -> pa.Table:
    n = len(world.user_country)
    return pa.table(
        {
            "user_id": _ids("u", np.arange(n), 7),
            "country": np.array(COUNTRIES)[world.user_country],
            "device": np.array(DEVICES)[world.user_device],
        },
        schema=SCHEMAS["users"],
    )


def _items_table(world: _World) -> pa.Table:
    vocab = np.array(world.vocabulary)
    titles = [" ".join(row) for row in vocab[world.item_tokens]]
    countries = np.array(COUNTRIES)
    available = ["|".join(countries[mask]) for mask in world.item_countries]
    n = len(world.item_category)
    return pa.table(
        {
            "item_id": _ids("i", np.arange(n), 6),
            "title": titles,
            "category": np.array(world.category_names)[world.item_category],
            "available_countries": available,
        },
        schema=SCHEMAS["items"],
    )


def _request_chunk(
    config: SimulationConfig,
    world: _World,
    rng: np.random.Generator,
    first_request: int,
    n_requests: int,
) -> dict[str, pa.Table]:
    canvases = np.array(list(config.canvas_shares))
    shares = np.array(list(config.canvas_shares.values()))
    canvas = rng.choice(len(canvases), n_requests, p=shares / shares.sum())
    canvas_names = canvases[canvas]
    user = rng.choice(len(world.user_vectors), n_requests, p=world.user_activity_p)
    uvec = world.user_vectors[user]
    start = config.start.timestamp()
    # Time of day follows a daily cycle: more traffic in the evening.
    day = rng.integers(0, config.days, n_requests)
    hour = np.clip(rng.normal(17.0, 4.5, n_requests), 0, 23.999)
    requested = start + day * 86_400 + hour * 3_600
    requested = np.floor(requested).astype(np.int64)

    is_related = canvas_names == "related"
    is_search = canvas_names == "search"
    is_category = canvas_names == "category"
    # Context: the category a user wants (search query, category page) and a source item.
    wanted_category = _softmax_choice(rng, 4.0 * uvec @ world.centroids.T)
    source_item = _sample_from_category(rng, world, wanted_category, 1)[:, 0]
    vocab_width = world.category_vocab.shape[1]
    query_words = world.category_vocab[
        wanted_category[:, None], rng.integers(0, vocab_width, (n_requests, 2))
    ]
    query_len = rng.integers(1, 3, n_requests)
    query_words[query_len == 1, 1] = -1

    # Candidates: popular items, plus items of the context's category for the contextual canvases.
    width = config.max_candidates
    n_shown = rng.integers(config.min_candidates, config.max_candidates + 1, n_requests)
    popular = rng.choice(len(world.item_category), (n_requests, width), p=world.item_pop_p)
    context_category = np.where(is_related, world.item_category[source_item], wanted_category)
    contextual = _sample_from_category(rng, world, context_category, width)
    contextual_share = np.select([is_related, is_search, is_category], [0.5, 0.6, 0.8], default=0.0)
    use_contextual = rng.random((n_requests, width)) < contextual_share[:, None]
    candidates = np.where(use_contextual, contextual, popular)
    candidates[is_related] = np.where(
        candidates[is_related] == source_item[is_related, None],
        rng.integers(0, len(world.item_category), (int(is_related.sum()), width)),
        candidates[is_related],
    )
    candidates = _dedupe_rows(rng, candidates, len(world.item_category))

    # Utility of every (request, candidate).
    cvec = world.item_vectors[candidates]
    preference = np.einsum("rd,rkd->rk", uvec, cvec)
    similarity = np.einsum("rd,rkd->rk", world.item_vectors[source_item], cvec)
    tokens = world.item_tokens[candidates]  # (r, k, 3)
    matches = (tokens[:, :, :, None] == query_words[:, None, None, :]).any(axis=2)
    match_share = matches.sum(axis=2) / query_len[:, None]
    category_match = (world.item_category[candidates] == wanted_category[:, None]).astype(float)
    signal = np.select(
        [is_related[:, None], is_search[:, None], is_category[:, None]],
        [similarity, match_share, category_match],
        default=0.0,
    )
    a = np.array([_PREFERENCE_WEIGHT[c] for c in canvases])[canvas][:, None]
    b = np.array([_SIGNAL_WEIGHT[c] for c in canvases])[canvas][:, None]
    threshold = np.array([_CLICK_THRESHOLD[c] for c in canvases])[canvas][:, None]
    utility = (
        a * 2.0 * preference
        + b * signal
        + 0.3 * world.item_log_pop[candidates]
        + rng.gumbel(size=candidates.shape)
    )
    position = np.broadcast_to(np.arange(width), candidates.shape)
    examined = rng.random(candidates.shape) < 1.0 / (1.0 + position) ** 0.6
    clicked = examined & (utility > threshold)
    available = world.item_countries[candidates, world.user_country[user][:, None]]
    converts = rng.random(candidates.shape) < 1.0 / (1.0 + np.exp(-(utility - threshold - 1.5)))
    converted = clicked & available & converts
    shown = position < n_shown[:, None]

    request_numbers = first_request + np.arange(n_requests)
    request_ids = _ids("r", request_numbers, 8)
    logged_out = (canvas_names != "home") & (rng.random(n_requests) < config.logged_out_share)
    vocab = np.array([*world.vocabulary, ""])
    query_text = np.where(
        query_len == 1,
        vocab[query_words[:, 0]],
        np.char.add(np.char.add(vocab[query_words[:, 0]], " "), vocab[query_words[:, 1]]),
    )
    users = _ids("u", user, 7)
    requests = {
        "request_id": request_ids.astype(object),
        "canvas": canvas_names.astype(object),
        "user_id": _where_else_null(~logged_out, users),
        "country": np.array(COUNTRIES)[world.user_country[user]].astype(object),
        "device": _where_else_null(
            canvas_names == "home", np.array(DEVICES)[world.user_device[user]]
        ),
        "source_item_id": _where_else_null(is_related, _ids("i", source_item, 6)),
        "query_text": _where_else_null(is_search, query_text),
        "category": _where_else_null(is_category, np.array(world.category_names)[wanted_category]),
        "requested_at": _format_times(requested).astype(object),
    }

    rows, cols = np.nonzero(shown)
    impressions = {
        "request_id": request_ids[rows].astype(object),
        "item_id": _ids("i", candidates[rows, cols], 6).astype(object),
        "position": (cols + 1).astype(np.int32),
    }
    click_rows, click_cols = np.nonzero(clicked & shown)
    click_at = requested[click_rows] + rng.integers(2, 300, click_rows.size)
    conv_mask = converted[click_rows, click_cols]
    conv_at = click_at[conv_mask] + rng.integers(60, 3_600, int(conv_mask.sum()))
    engagements = {
        "request_id": np.concatenate(
            [request_ids[click_rows], request_ids[click_rows[conv_mask]]]
        ).astype(object),
        "item_id": np.concatenate(
            [
                _ids("i", candidates[click_rows, click_cols], 6),
                _ids("i", candidates[click_rows, click_cols][conv_mask], 6),
            ]
        ).astype(object),
        "event_type": np.array(
            ["click"] * click_rows.size + ["conversion"] * int(conv_mask.sum()), dtype=object
        ),
        "event_at": _format_times(np.concatenate([click_at, conv_at])).astype(object),
    }
    _corrupt(rng, config.dirty_share, requests, impressions)
    return {
        "requests": pa.table(requests, schema=SCHEMAS["requests"]),
        "impressions": pa.table(impressions, schema=SCHEMAS["impressions"]),
        "engagements": pa.table(engagements, schema=SCHEMAS["engagements"]),
    }


def _corrupt(
    rng: np.random.Generator,
    share: float,
    requests: dict[str, np.ndarray],
    impressions: dict[str, np.ndarray],
) -> None:
    """Damage a small share of rows the way production logs are damaged."""
    if share <= 0:
        return
    n = len(requests["request_id"])
    bad = np.flatnonzero(rng.random(n) < share)
    kinds = rng.integers(0, 3, bad.size)
    requests["canvas"][bad[kinds == 0]] = "promo"
    requests["requested_at"][bad[kinds == 1]] = "not-a-time"
    requests["request_id"][bad[kinds == 2]] = None
    m = len(impressions["item_id"])
    impressions["item_id"][rng.random(m) < share / 4] = None


def iter_chunks(config: SimulationConfig) -> Iterator[dict[str, pa.Table]]:
    """Yield the tables chunk by chunk: ``users`` and ``items`` first, then request chunks."""
    rng = np.random.default_rng(config.seed)
    world = _build_world(config, rng)
    yield {"users": _users_table(world), "items": _items_table(world)}
    total = config.n_requests
    for first in range(0, total, config.chunk_requests):
        size = min(config.chunk_requests, total - first)
        chunk_rng = np.random.default_rng([config.seed, first])
        yield _request_chunk(config, world, chunk_rng, first, size)


@dataclass(frozen=True)
class GeneratedLogs:
    """Where the logs went and how many rows each table has."""

    directory: Path
    file_format: str
    row_counts: dict[str, int]


def generate(
    config: SimulationConfig,
    directory: Path,
    file_format: str = "parquet",
    on_chunk: Callable[[int], None] | None = None,
) -> GeneratedLogs:
    """Write the logs under ``directory``.

    ``parquet`` writes ``<table>/part-NNNNN.parquet`` files, one per chunk, for dbt sources.
    ``csv`` writes ``demo_<table>.csv`` seed files (use only for small sets).
    ``on_chunk`` is called with the number of requests written after each chunk (progress).
    The set is written aside (``<directory>.partial``) and renamed into place only when complete:
    a failed or interrupted run leaves the previous set, if any, untouched.
    """
    if file_format not in {"parquet", "csv"}:
        raise SimulationError(f"file_format must be 'parquet' or 'csv', got {file_format!r}")
    directory = Path(directory)
    staging = directory.with_name(directory.name + ".partial")
    if staging.exists():
        _remove_tree(staging)
    staging.mkdir(parents=True)
    counts = dict.fromkeys(TABLES, 0)
    csv_writers: dict[str, pacsv.CSVWriter] = {}
    part = 0
    try:
        for chunk in iter_chunks(config):
            for name, table in chunk.items():
                counts[name] += table.num_rows
                if file_format == "parquet":
                    (staging / name).mkdir(exist_ok=True)
                    pq.write_table(table, staging / name / f"part-{part:05d}.parquet")
                else:
                    if name not in csv_writers:
                        csv_writers[name] = pacsv.CSVWriter(
                            staging / f"demo_{name}.csv", table.schema
                        )
                    csv_writers[name].write_table(table)
            part += 1
            if on_chunk is not None:
                on_chunk(counts["requests"])
            logger.info("generated %s requests", counts["requests"])
    except BaseException:
        for writer in csv_writers.values():
            writer.close()
        _remove_tree(staging)
        raise
    for writer in csv_writers.values():
        writer.close()
    if directory.exists():
        _remove_tree(directory)
    staging.rename(directory)
    return GeneratedLogs(directory=directory, file_format=file_format, row_counts=counts)


def _remove_tree(path: Path) -> None:
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()
