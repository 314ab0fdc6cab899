"""BM25 ranking of notes by their words, with tantivy: on disk, and changed in place.

A KB of 100,000 claims cannot rebuild its ranking after every commit (an
in-memory BM25 took seconds to build); tantivy keeps an inverted index in a
folder, takes deletions and additions in small segments and merges them by
itself, and answers a query of a few hundred words over 100,000 notes in
milliseconds. Words are cut here, not by tantivy, so that notes and queries
are cut the same way: lower case, runs of two or more word characters, a short
English stopword list (the one the ranking used before, so results stay
comparable). A word repeated in the query counts as often as it is repeated.
"""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import tantivy
from filelock import FileLock

STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)
WORDS = re.compile(r"(?u)\b\w\w+\b")
MAX_QUERY_WORDS = 1024  # a query is a source's opening; past this many words it adds nothing but time
TIE_SLACK = 10  # hits asked beyond the limit, so that equal scores at the cut are ordered by path
WRITER_HEAP = 50_000_000
RELOAD_ATTEMPTS = 5  # tantivy's least heap for one indexing thread is 15 MB


def words(text: str) -> list[str]:
    """The words a note is ranked by, and a query searches with."""
    return [word for word in WORDS.findall(text.lower()) if word not in STOPWORDS and len(word) <= 200]


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("path", stored=True, tokenizer_name="raw")
    builder.add_text_field("words", stored=False, tokenizer_name="whitespace")
    return builder.build()


class Ranking:
    """The notes' words by path: ``replace`` what changed, ``search`` with a text.

    ``folder`` None keeps it in memory. On disk, a writer works under a file
    lock, so processes of one KB take turns changing it; readers need none.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.schema = _schema()
        if folder is None:
            self.index = tantivy.Index(self.schema)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                self.index = tantivy.Index(self.schema, path=str(folder), reuse=True)
            except ValueError:  # another schema or a damaged folder: it is only a cache of git, build it again
                shutil.rmtree(folder)
                folder.mkdir(parents=True)
                self.index = tantivy.Index(self.schema, path=str(folder), reuse=True)
        self.index.config_reader(reload_policy="Manual")

    def replace(self, removed: Iterable[str], added: Iterable[tuple[str, str]], everything: bool = False) -> None:
        """Drop the notes at ``removed`` (and at every path of ``added``), add ``added`` (path, text) as new;
        ``everything`` drops all notes first."""
        lock = FileLock(str(self.folder / "writer.lock")) if self.folder is not None else None
        if lock is not None:
            lock.acquire()
        try:
            writer = self.index.writer(heap_size=WRITER_HEAP, num_threads=1)
            added = list(added)
            if everything:
                writer.delete_all_documents()
            else:
                for path in {*removed, *(path for path, _ in added)}:
                    writer.delete_documents_by_term("path", path)
            for path, text in added:
                writer.add_document(tantivy.Document(path=path, words=" ".join(words(text))))
            writer.commit()
            writer.wait_merging_threads()
        finally:
            if lock is not None:
                lock.release()
        self.reload()

    def search(self, text: str, limit: int) -> list[tuple[str, float]]:
        """The ``limit`` best notes for ``text`` by BM25, best first, as (path, score); none for no words."""
        counts = Counter(words(text)[:MAX_QUERY_WORDS])
        if not counts or limit <= 0:
            return []
        clauses = []
        for word, times in counts.items():
            query = tantivy.Query.term_query(self.schema, "words", word)
            clauses.append((tantivy.Occur.Should, query if times == 1 else tantivy.Query.boost_query(query, times)))
        searcher = self.index.searcher()
        hits = searcher.search(tantivy.Query.boolean_query(clauses), limit + TIE_SLACK).hits
        found = [(str(searcher.doc(address)["path"][0]), float(score)) for score, address in hits]
        # Equal scores in path order, not in the order segments happen to hold them: one KB, one ranking.
        return sorted(found, key=lambda hit: (-hit[1], hit[0]))[:limit]

    def reload(self) -> None:
        """See what other processes committed since. Another process's writer may remove the files of an
        older commit while this one opens them: tried again on the commit that replaced it."""
        for attempt in range(RELOAD_ATTEMPTS):
            try:
                self.index.reload()
                return
            except ValueError:
                if attempt == RELOAD_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
