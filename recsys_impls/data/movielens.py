"""MovieLens-100k as a real-data click scenario, read from the files inside the installed recbole wheel.

Why recbole's copy: the licence forbids redistributing the data, and no network is needed when the
wheel is installed (``pip install --no-deps recbole==1.2.1``). We only locate the package with
``importlib.util.find_spec``; importing recbole would pull in its heavy dependencies.

Samples are the 100,000 ratings. Label: rating >= 4 (a "click", about 55% of ratings).

Categorical features (one table each; row 0 is reserved for an unknown/missing value, so every bag
has at least one id): user id, item id, age bucket (<18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+),
gender, occupation, genres (multi-hot: a film has 1-6), release decade.

Dense features (no label information; ``timestamp`` is scaled over the whole file, which uses no
labels): age / 100, (release year - 1900) / 100 (missing -> the median year), the rating's time scaled to
[0, 1] over the file, and the film's age in years at rating time / 100 (clipped at 0).

Split: a seeded random permutation of the ratings (``scenario.train.seed``). The eval split is the
first ``min(num_eval, 20% of the ratings)``, the train split the next ``min(num_train, the rest)``;
a runner that wants more training samples than that should loop over the train split in epochs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from recsys_impls.data.batch import Batch
from recsys_impls.data.dataset import Dataset
from recsys_impls.errors import ScenarioUnsupported

INSTALL_HINT = "MovieLens-100k needs the recbole package: pip install --no-deps recbole==1.2.1"
MAX_EVAL_FRACTION = 0.2
AGE_EDGES = (18, 25, 35, 45, 50, 56)
TABLES = ("user", "item", "age_bucket", "gender", "occupation", "genres", "release_decade")
DENSE = ("age", "release_year", "timestamp", "film_age_at_rating")


def locate() -> Path:
    """Directory holding ml-100k.{inter,user,item}, or ScenarioUnsupported saying what to install."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ScenarioUnsupported(INSTALL_HINT)
    for root in spec.submodule_search_locations:
        d = Path(root) / "dataset_example" / "ml-100k"
        if all((d / f"ml-100k.{ext}").is_file() for ext in ("inter", "user", "item")):
            return d
    raise ScenarioUnsupported(f"{INSTALL_HINT} (recbole is installed but has no dataset_example/ml-100k files)")


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """recbole atomic file: a header of name:type fields, then tab-separated rows."""
    lines = path.read_text(encoding="latin-1").splitlines()
    header = [h.split(":")[0] for h in lines[0].split("\t")]
    rows = [line.split("\t") for line in lines[1:] if line]
    return header, rows


def _vocab(values: list[str]) -> dict[str, int]:
    """Sorted distinct non-empty values -> ids 1..n (0 stays reserved for unknown)."""
    return {v: i + 1 for i, v in enumerate(sorted({v for v in values if v}))}


def _column(header: list[str], rows: list[list[str]], name: str) -> list[str]:
    i = header.index(name)
    return [r[i] if i < len(r) else "" for r in rows]


def _read(directory: Path) -> dict:
    """Parse the three files into numpy arrays indexed by rating, plus the table sizes."""
    ih, irows = _read_table(directory / "ml-100k.inter")
    uh, urows = _read_table(directory / "ml-100k.user")
    th, trows = _read_table(directory / "ml-100k.item")
    inter = np.array([[int(r[0]), int(r[1]), float(r[2]), float(r[3])] for r in irows], dtype=np.float64)
    # users
    user_ids = [int(u) for u in _column(uh, urows, "user_id")]
    ages = np.array([int(a) if a else 0 for a in _column(uh, urows, "age")], dtype=np.int64)
    gender_v = _vocab(_column(uh, urows, "gender"))
    occ_v = _vocab(_column(uh, urows, "occupation"))
    user_row = {u: i for i, u in enumerate(user_ids)}
    # items
    item_ids = [int(i) for i in _column(th, trows, "item_id")]
    years = np.array([int(y) if y.isdigit() else 0 for y in _column(th, trows, "release_year")], dtype=np.int64)
    genre_lists = [g.split() for g in _column(th, trows, "class")]
    genre_v = _vocab([g for gs in genre_lists for g in gs])
    item_row = {it: i for i, it in enumerate(item_ids)}
    n = inter.shape[0]
    u_idx = np.array([user_row.get(int(u), -1) for u in inter[:, 0]], dtype=np.int64)
    i_idx = np.array([item_row.get(int(i), -1) for i in inter[:, 1]], dtype=np.int64)
    user_vocab = {u: k + 1 for k, u in enumerate(sorted(set(user_ids)))}
    item_vocab = {it: k + 1 for k, it in enumerate(sorted(set(item_ids)))}
    decades = np.where(years > 0, years // 10 * 10, 0)
    decade_v = {int(d): k + 1 for k, d in enumerate(sorted(set(decades[decades > 0].tolist())))}
    known_u, known_i = u_idx >= 0, i_idx >= 0

    def per_user(values: np.ndarray) -> np.ndarray:
        return np.where(known_u, values[np.maximum(u_idx, 0)], 0)

    def per_item(values: np.ndarray) -> np.ndarray:
        return np.where(known_i, values[np.maximum(i_idx, 0)], 0)

    age_bucket = np.where(ages > 0, np.searchsorted(AGE_EDGES, ages, side="right") + 1, 0)
    cats = {
        "user": np.array([user_vocab.get(int(u), 0) for u in inter[:, 0]], dtype=np.int64),
        "item": np.array([item_vocab.get(int(i), 0) for i in inter[:, 1]], dtype=np.int64),
        "age_bucket": per_user(age_bucket),
        "gender": per_user(np.array([gender_v.get(g, 0) for g in _column(uh, urows, "gender")])),
        "occupation": per_user(np.array([occ_v.get(o, 0) for o in _column(uh, urows, "occupation")])),
        "release_decade": per_item(np.array([decade_v.get(int(d), 0) for d in decades])),
    }
    sizes = {
        "user": len(user_vocab) + 1, "item": len(item_vocab) + 1, "age_bucket": len(AGE_EDGES) + 2,
        "gender": len(gender_v) + 1, "occupation": len(occ_v) + 1, "genres": len(genre_v) + 1,
        "release_decade": len(decade_v) + 1,
    }
    # genres as CSR over items; an item with none (or an unknown item) gets the reserved id 0
    bags = [[genre_v[g] for g in gs] or [0] for gs in genre_lists] + [[0]]  # last: unknown item
    bag_len = np.array([len(b) for b in bags], dtype=np.int64)
    bag_off = np.concatenate([[0], np.cumsum(bag_len)])
    bag_ids = np.array([g for b in bags for g in b], dtype=np.int64)
    g_item = np.where(known_i, i_idx, len(bags) - 1)
    # dense
    ts = inter[:, 3]
    year_known = years > 0
    median_year = float(np.median(years[year_known])) if year_known.any() else 1990.0
    film_year = per_item(np.where(year_known, years, median_year).astype(np.float64))
    film_year = np.where(known_i, film_year, median_year)
    rating_year = 1970.0 + ts / (365.2425 * 86400)
    span = max(float(ts.max() - ts.min()), 1.0)
    dense = np.stack([
        per_user(ages.astype(np.float64)) / 100.0,
        (film_year - 1900.0) / 100.0,
        (ts - ts.min()) / span,
        np.maximum(rating_year - film_year, 0.0) / 100.0,
    ], axis=1).astype(np.float32)
    return {
        "n": n, "labels": (inter[:, 2] >= 4).astype(np.float32), "cats": cats, "sizes": sizes,
        "genre": (g_item, bag_len, bag_off, bag_ids), "dense": dense,
    }


def _batch(d: dict, rows: np.ndarray) -> Batch:
    """Ratings ``rows`` as a Batch in the TABLES order (genres multi-hot, the rest one id each)."""
    g_item, bag_len, bag_off, bag_ids = d["genre"]
    items = g_item[rows]
    lens = bag_len[items]
    starts = bag_off[items]
    first = np.concatenate([[0], np.cumsum(lens)[:-1]])
    genre_ids = bag_ids[np.repeat(starts - first, lens) + np.arange(int(lens.sum()))]
    ids, lengths = [], []
    for name in TABLES:
        if name == "genres":
            ids.append(genre_ids)
            lengths.append(lens.astype(np.int32))
        else:
            ids.append(d["cats"][name][rows])
            lengths.append(np.ones(rows.size, dtype=np.int32))
    return Batch(
        dense=np.ascontiguousarray(d["dense"][rows]), ids=np.concatenate(ids).astype(np.int64),
        lengths=np.stack(lengths), labels=np.ascontiguousarray(d["labels"][rows]),
    )


def load_movielens(seed: int, num_train: int, num_eval: int) -> Dataset:
    """MovieLens-100k train/eval Datasets; table sizes and num_dense come from the data."""
    directory = locate()
    d = _read(directory)
    n = d["n"]
    n_eval = min(num_eval, int(n * MAX_EVAL_FRACTION))
    n_train = min(num_train, n - n_eval)
    order = np.random.default_rng([seed, 100]).permutation(n)
    evaluation = _batch(d, order[:n_eval])
    train = _batch(d, order[n_eval : n_eval + n_train])
    try:
        from importlib.metadata import version

        source = f"recbole {version('recbole')}"
    except Exception:  # noqa: BLE001 - the version is a nicety for the record
        source = "recbole"
    return Dataset(
        name="movielens", train=train, eval=evaluation, num_dense=len(DENSE),
        table_sizes=tuple(int(d["sizes"][t]) for t in TABLES),
        info={
            "source": f"{source}: {directory}", "ratings": n, "tables": list(TABLES), "dense": list(DENSE),
            "label": "rating >= 4", "ctr": float(train.labels.mean()), "eval_ctr": float(evaluation.labels.mean()),
            "split": (f"seeded random (seed {seed}): {n_eval} eval ratings (at most "
                      f"{int(MAX_EVAL_FRACTION * 100)}%), then {n_train} train"),
            "mean_genres_per_film": float(train.lengths[TABLES.index("genres")].mean()),
        },
    )
