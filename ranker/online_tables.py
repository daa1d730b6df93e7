"""What online scoring reads from one published cache generation, loaded once into memory.

``unirank-cli score`` copies the online marts dbt builds (:data:`ONLINE_TABLES`) into every
cache generation: ``online_item_features`` (every feature of one `latest` probe
per served canvas and catalogue item, at the serving clock), ``online_user_items`` and
``online_item_pairs`` (per-entity history at the serving clock). :class:`OnlineTables` holds them,
the catalogue and a title-word index, and the per-canvas row plans ``ranker.online`` derives from
them; the file never changes, so nothing is read twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ranker.errors import UnirankError

if TYPE_CHECKING:
    from ranker.cache_reader import CacheReader

ONLINE_TABLES = ("online_item_features", "online_user_items", "online_item_pairs")
TITLE_TOKENS = 8  # the words of a query or title that count (macro split_tokens' max_tokens)


class OnlineUnavailable(UnirankError):
    """Online scoring cannot answer with this cache and model; the message says why."""


def tokens(text: str) -> list[str]:
    """The distinct words of ``text`` as macro split_tokens takes them: lower(trim(text)) split on
    single spaces, the first TITLE_TOKENS positions, empty ones dropped (ASCII; other text is
    lowered by DuckDB, see :meth:`OnlineTables.query_tokens`)."""
    parts = text.strip(" ").lower().split(" ")[:TITLE_TOKENS]
    return list(dict.fromkeys(p for p in parts if p))


# A context feature model evaluated for one request: item -> its columns (None: not applicable).
ItemValues = Callable[[str], dict[str, Any]] | None


@dataclass
class Plan:
    """How ``ranker.online`` assembles one canvas's rows for one model (once per generation)."""

    rows: dict[str, list[Any]]  # item -> its row of item-grain features
    default: list[Any]  # the row of an item the latest probes do not have
    context_columns: list[tuple[int, str]]  # (position, context column used as a feature)
    positions: dict[str, int]  # feature evaluated per request -> its position
    evaluated: list[Callable[[OnlineTables, Mapping[str, Any]], ItemValues]]


class OnlineTables:
    """The online tables of one cache generation, read once into memory (the file never changes).
    Built under the reader's lock; used without it."""

    def __init__(self, reader: CacheReader, feature_names: Sequence[str]) -> None:
        connection = reader.connection
        present = {
            str(r[0])
            for r in connection.execute(
                "select table_name from information_schema.tables"
            ).fetchall()
        }
        if "online_item_features" not in present:
            raise OnlineUnavailable(
                f"the cache {reader.path.name} has no online tables (its warehouse was built "
                "before online scoring); run `unirank-cli build` and `unirank-cli score`"
            )
        columns = [
            str(r[0])
            for r in connection.execute(
                "select column_name from information_schema.columns "
                "where table_name = 'online_item_features' order by ordinal_position"
            ).fetchall()
        ]
        self.feature_columns = [c for c in columns if c in set(feature_names)]
        self.item_features: dict[tuple[str, str], dict[str, Any]] = {}
        quoted = ", ".join(f'"{c}"' for c in self.feature_columns)
        for row in connection.execute(
            f"select task_type, item_id{', ' + quoted if quoted else ''} from online_item_features"
        ).fetchall():
            self.item_features[(str(row[0]), str(row[1]))] = dict(
                zip(self.feature_columns, row[2:], strict=True)
            )
        self.user_items: dict[str, dict[str, int]] = {}
        self.user_categories: dict[str, dict[str | None, int]] = {}
        if "online_user_items" in present:
            for user, item, category, count in connection.execute(
                "select user_id, item_id, item_category, engagements from online_user_items"
            ).fetchall():
                items = self.user_items.setdefault(str(user), {})
                items[str(item)] = items.get(str(item), 0) + int(count)
                categories = self.user_categories.setdefault(str(user), {})
                categories[category] = categories.get(category, 0) + int(count)
        self.pairs: dict[str, dict[str, int]] = {}
        if "online_item_pairs" in present:
            for a, b, count in connection.execute(
                "select item_a, item_b, coengagements from online_item_pairs"
            ).fetchall():
                self.pairs.setdefault(str(a), {})[str(b)] = int(count)
        self.catalogue = reader.catalogue()
        self.title_tokens: dict[str, frozenset[str]] = {}
        self.token_items: dict[str, list[str]] = {}
        for item_id, words in connection.execute(
            "select item_id, list_distinct(list_filter("
            f"string_split(lower(trim(title)), ' ')[1:{TITLE_TOKENS}], lambda w: w <> '')) "
            "from item_catalogue where title is not null"
        ).fetchall():
            self.title_tokens[str(item_id)] = frozenset(words)
            for word in words:
                self.token_items.setdefault(word, []).append(str(item_id))
        self.reader = reader
        self.plans: dict[tuple[str, tuple[str, ...]], Plan] = {}

    def query_tokens(self, query: str) -> list[str]:
        if query.isascii():
            return tokens(query)
        with self.reader.lock:  # lower() of non-ASCII text as DuckDB does it
            if self.reader.closed:
                raise OnlineUnavailable("the cache generation was replaced; ask again")
            row = self.reader.connection.execute(
                f"select list_distinct(list_filter(string_split(lower(trim(?::varchar)), ' ')"
                f"[1:{TITLE_TOKENS}], lambda w: w <> ''))",
                [query],
            ).fetchall()
        return list(row[0][0]) if row and row[0][0] else []
