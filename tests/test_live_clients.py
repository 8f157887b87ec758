"""Tests of the live Materials Project and OQMD clients against fake transports (no network).

The fake MPRester returns documents built by mp_api's own document machinery (partial
``SummaryDoc`` models, as ``MPRester(...).materials.summary.search(fields=...)`` returns them) or
plain dicts; the fake ``requests.Session`` returns real ``requests.Response`` objects carrying
pages shaped like OQMD's ``/oqmdapi/formationenergy`` answers.
"""

from __future__ import annotations

import json
import socket
import sys
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import pytest
import requests
from pymatgen.core import Lattice, Structure

from alhelpers.data import mp as mp_mod
from alhelpers.data import oqmd as oqmd_mod
from alhelpers.data.mp import (
    MP_SUMMARY_FIELDS,
    MissingAPIKeyError,
    MPQueryError,
    fetch_mp,
    resolve_mp_api_key,
)
from alhelpers.data.oqmd import OQMD_URL, OQMDError, OQMDUnavailableError, fetch_oqmd
from alhelpers.keys import ENTRY_COLUMNS, Key

SECRET = "sk-test-0123456789abcdefSECRET"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any real socket connection in these tests is a bug."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def no_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import google.colab`` fail, whatever is installed."""
    monkeypatch.setitem(sys.modules, "google.colab", None)


def install_fake_colab(monkeypatch: pytest.MonkeyPatch, get: Callable[[str], str]) -> list[str]:
    """Install a fake ``google.colab.userdata``; returns the list of names asked for."""
    asked: list[str] = []

    def _get(name: str) -> str:
        asked.append(name)
        return get(name)

    userdata = types.ModuleType("google.colab.userdata")
    userdata.get = _get  # type: ignore[attr-defined]
    colab = types.ModuleType("google.colab")
    colab.userdata = userdata  # type: ignore[attr-defined]
    if "google" not in sys.modules:
        monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    return asked


# =============================================================================================
# Materials Project: fake MPRester
# =============================================================================================


def rutile() -> Structure:
    """Rutile TiO2 (P4_2/mnm), 6 sites, built by hand."""
    u = 0.3049
    return Structure(
        Lattice.tetragonal(4.594, 2.959),
        ["Ti", "Ti", "O", "O", "O", "O"],
        [
            [0, 0, 0],
            [0.5, 0.5, 0.5],
            [u, u, 0],
            [1 - u, 1 - u, 0],
            [0.5 + u, 0.5 - u, 0.5],
            [0.5 - u, 0.5 + u, 0.5],
        ],
    )


def anatase() -> Structure:
    """Anatase TiO2 (I4_1/amd), conventional cell from the space group (12 sites)."""
    return Structure.from_spacegroup(
        "I4_1/amd", Lattice.tetragonal(3.785, 9.514), ["Ti", "O"], [[0, 0, 0], [0, 0, 0.2081]]
    )


def raw_doc(material_id: str, *, structure: Structure | None = None, **overrides: Any) -> dict:
    """A summary document as the API's JSON gives it (structure as a dict)."""
    s = structure or rutile()
    doc: dict[str, Any] = {
        "material_id": material_id,
        "formula_pretty": s.composition.reduced_formula,
        "nsites": len(s),
        "formation_energy_per_atom": -3.3,
        "energy_per_atom": -8.9,
        "band_gap": 1.8,
        "density": s.density,
        "volume": s.volume,
        "energy_above_hull": 0.0,
        "is_stable": True,
        "structure": s.as_dict(),
    }
    doc.update(overrides)
    return doc


def summary_docs(raws: Sequence[dict]) -> list[Any]:
    """Documents as mp_api returns them: partial SummaryDoc models with attribute access."""
    try:
        from emmet.core.summary import SummaryDoc
        from mp_api.client.core.schemas import _convert_to_model
    except ImportError:  # private API moved: fall back to plain attribute objects
        return [types.SimpleNamespace(**r) for r in raws]
    return list(_convert_to_model(list(raws), SummaryDoc, requested_fields=list(MP_SUMMARY_FIELDS)))


class FakeSummary:
    """Stands in for ``MPRester().materials.summary``; records every search's kwargs."""

    def __init__(self, docs: Sequence[Any], error: Exception | None = None) -> None:
        self.docs = list(docs)
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def search(self, **kwargs: Any) -> list[Any]:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return list(self.docs)


class FakeRester:
    """Context manager with ``.materials.summary.search``, like ``MPRester``."""

    def __init__(self, api_key: str, summary: FakeSummary) -> None:
        self.api_key = api_key
        self.materials = types.SimpleNamespace(summary=summary)
        self.entered = False
        self.exited = False

    def __enter__(self) -> FakeRester:
        self.entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.exited = True


class FakeFactory:
    """``rester_factory`` that remembers the resters (and keys) it made."""

    def __init__(self, docs: Sequence[Any] = (), error: Exception | None = None) -> None:
        self.summary = FakeSummary(docs, error)
        self.resters: list[FakeRester] = []

    def __call__(self, api_key: str) -> FakeRester:
        rester = FakeRester(api_key, self.summary)
        self.resters.append(rester)
        return rester


def test_mp_requests_explicit_fields_and_elements() -> None:
    factory = FakeFactory(summary_docs([raw_doc("mp-2657")]))
    fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=factory)

    (call,) = factory.summary.calls
    assert call["elements"] == ["Ti", "O"]
    assert call["fields"] == [
        "material_id",
        "formula_pretty",
        "nsites",
        "formation_energy_per_atom",
        "energy_per_atom",
        "band_gap",
        "density",
        "volume",
        "energy_above_hull",
        "is_stable",
        "structure",
    ]
    assert call["_sort_fields"] == "material_id"
    assert call["chunk_size"] * call["num_chunks"] >= 500  # default limit is covered
    (rester,) = factory.resters
    assert rester.api_key == SECRET
    assert rester.entered and rester.exited


def test_mp_search_kwargs_scale_with_limit() -> None:
    small = mp_mod.build_summary_search_kwargs(["C"], limit=20)
    assert (small["chunk_size"], small["num_chunks"]) == (20, 1)
    large = mp_mod.build_summary_search_kwargs(["C"], limit=2500)
    assert (large["chunk_size"], large["num_chunks"]) == (1000, 3)


def test_mp_tidy_columns_and_dtypes() -> None:
    raws = [
        raw_doc("mp-2657"),
        raw_doc("mp-390", structure=anatase(), formation_energy_per_atom=-3.25, is_stable=False,
                energy_above_hull=0.05, band_gap=2.1),
    ]
    df = fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=FakeFactory(summary_docs(raws)))

    assert list(df.columns[: len(ENTRY_COLUMNS)]) == list(ENTRY_COLUMNS)
    assert set(df.columns) == {
        Key.source, Key.dataset, Key.entry_id, Key.formula, Key.nsites, Key.target,
        Key.energy_per_atom, Key.band_gap, Key.density, Key.volume, Key.e_above_hull,
        Key.is_stable, Key.structure,
    }
    assert (df[Key.source] == "mp").all() and (df[Key.dataset] == "mp_api").all()
    assert df[Key.entry_id].tolist() == ["mp-390", "mp-2657"]  # natural id order
    assert all(type(x) is str for x in df[Key.entry_id])
    assert df[Key.formula].tolist() == ["TiO2", "TiO2"]
    assert df[Key.nsites].dtype == "Int64" and df[Key.nsites].tolist() == [12, 6]
    for col in (Key.target, Key.energy_per_atom, Key.band_gap, Key.density, Key.volume,
                Key.e_above_hull):
        assert df[col].dtype == "float64", col
    assert df[Key.is_stable].dtype == "boolean"
    assert df[Key.is_stable].tolist() == [False, True]
    assert df[Key.target].tolist() == pytest.approx([-3.25, -3.3])
    assert df[Key.e_above_hull].tolist() == pytest.approx([0.05, 0.0])
    assert df.attrs["dropped_malformed"] == 0


def test_mp_structure_json_round_trips() -> None:
    raws = [raw_doc("mp-2657", structure=rutile()), raw_doc("mp-390", structure=anatase())]
    df = fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=FakeFactory(summary_docs(raws)))
    by_id = df.set_index(Key.entry_id)[Key.structure]

    back = Structure.from_dict(json.loads(by_id["mp-2657"]))
    assert back == rutile()
    assert back.composition.reduced_formula == "TiO2"
    assert len(Structure.from_dict(json.loads(by_id["mp-390"]))) == len(anatase())


def test_mp_docs_as_dicts_and_missing_structure() -> None:
    raws = [raw_doc("mp-1"), raw_doc("mp-2", structure=None)]
    raws[1]["structure"] = None
    df = fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=FakeFactory(raws))
    assert df[Key.entry_id].tolist() == ["mp-1", "mp-2"]
    assert isinstance(df[Key.structure].iloc[0], str)
    assert df[Key.structure].iloc[1] is None


def test_mp_limit_respected_after_sorting_by_material_id() -> None:
    ids = ["mp-390", "mp-10", "mp-2657", "mp-1", "mp-2"]
    factory = FakeFactory(summary_docs([raw_doc(i) for i in ids]))
    df = fetch_mp(["Ti", "O"], limit=3, api_key=SECRET, rester_factory=factory)

    assert df[Key.entry_id].tolist() == ["mp-1", "mp-2", "mp-10"]
    (call,) = factory.summary.calls
    assert (call["chunk_size"], call["num_chunks"]) == (3, 1)


def test_mp_malformed_rows_dropped_and_counted(warning_text) -> None:
    raws = [
        raw_doc("mp-1"),
        raw_doc("mp-2", formation_energy_per_atom=None),
        raw_doc("mp-3", formation_energy_per_atom="abc"),
        raw_doc(None),  # type: ignore[arg-type]
        raw_doc("mp-5", formation_energy_per_atom=float("nan")),
    ]
    with pytest.warns(UserWarning, match=r"dropped 4 malformed entries of 5") as rec:
        df = fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=FakeFactory(raws))
    assert df[Key.entry_id].tolist() == ["mp-1"]
    assert df.attrs["dropped_malformed"] == 4
    message = warning_text(rec, r"dropped 4 malformed entries of 5")
    assert "missing material_id" in message and "formation_energy_per_atom" in message


def test_mp_partial_model_docs_with_unreturned_fields() -> None:
    """Partial SummaryDoc models raise AttributeError for fields not returned: treated as NA."""
    first = raw_doc("mp-1")
    docs = summary_docs([{k: v for k, v in first.items() if k not in ("band_gap", "density")}])
    df = fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=FakeFactory(docs))
    assert df[Key.band_gap].isna().all() and df[Key.density].isna().all()
    assert df[Key.target].tolist() == [-3.3]


def test_mp_empty_result_has_columns() -> None:
    df = fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=FakeFactory([]))
    assert len(df) == 0
    assert list(df.columns[: len(ENTRY_COLUMNS)]) == list(ENTRY_COLUMNS)
    assert df[Key.nsites].dtype == "Int64"


def test_mp_missing_key_raises_with_both_ways(
    monkeypatch: pytest.MonkeyPatch, no_colab: None
) -> None:
    monkeypatch.delenv("MP_API_KEY", raising=False)
    factory = FakeFactory([])
    with pytest.raises(MissingAPIKeyError) as info:
        fetch_mp(["Ti", "O"], rester_factory=factory)
    message = str(info.value)
    assert "MP_API_KEY" in message and "Colab" in message and "Secrets" in message
    assert "snapshot" in message
    assert isinstance(info.value, RuntimeError)
    assert factory.resters == []  # nothing was contacted


def test_mp_blank_env_key_counts_as_missing(
    monkeypatch: pytest.MonkeyPatch, no_colab: None
) -> None:
    monkeypatch.setenv("MP_API_KEY", "   ")
    with pytest.raises(MissingAPIKeyError):
        fetch_mp(["Ti", "O"], rester_factory=FakeFactory([]))


def test_mp_key_taken_from_environment(monkeypatch: pytest.MonkeyPatch, no_colab: None) -> None:
    monkeypatch.setenv("MP_API_KEY", SECRET)
    factory = FakeFactory(summary_docs([raw_doc("mp-1")]))
    fetch_mp(["Ti", "O"], rester_factory=factory)
    assert factory.resters[0].api_key == SECRET


def test_resolve_key_from_env_mapping(no_colab: None) -> None:
    assert resolve_mp_api_key({"MP_API_KEY": SECRET}) == SECRET
    assert resolve_mp_api_key({"MP_API_KEY": f"  {SECRET}\n"}) == SECRET
    assert resolve_mp_api_key({}) is None
    assert resolve_mp_api_key({"OTHER": "x"}) is None


def test_resolve_key_from_colab_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = install_fake_colab(monkeypatch, lambda name: "colab-key")
    assert resolve_mp_api_key({}) == "colab-key"
    assert asked == ["MP_API_KEY"]
    # the environment wins over Colab, and Colab is then not consulted
    asked.clear()
    assert resolve_mp_api_key({"MP_API_KEY": SECRET}) == SECRET
    assert asked == []


def test_resolve_key_colab_errors_mean_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    class SecretNotFoundError(Exception):
        pass

    def missing(name: str) -> str:
        raise SecretNotFoundError(name)

    install_fake_colab(monkeypatch, missing)
    assert resolve_mp_api_key({}) is None


def test_mp_key_never_leaks(monkeypatch: pytest.MonkeyPatch, no_colab: None) -> None:
    monkeypatch.setenv("MP_API_KEY", SECRET)
    raws = [raw_doc("mp-1"), raw_doc("mp-2", formation_energy_per_atom="abc")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = fetch_mp(["Ti", "O"], rester_factory=FakeFactory(raws))
    assert caught, "expected a malformed-row warning"
    assert all(SECRET not in str(w.message) for w in caught)
    for text in (str(df), repr(df), df.to_csv(), str(df.attrs), df.to_json()):
        assert SECRET not in text
    assert SECRET not in str(MissingAPIKeyError())


def test_mp_query_error_masks_key() -> None:
    boom = RuntimeError(f"401 Unauthorized for key {SECRET}")
    with pytest.raises(MPQueryError) as info:
        fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=FakeFactory(error=boom))
    assert SECRET not in str(info.value)
    assert "MP_API_KEY" in str(info.value) and "snapshot" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("bad", [[], ["Ti", "Xx"], "TiO"])
def test_mp_rejects_bad_elements(bad: Any) -> None:
    with pytest.raises(ValueError):
        fetch_mp(bad, api_key=SECRET, rester_factory=FakeFactory([]))


def test_mp_excludes_gnome_by_default_and_records_it() -> None:
    factory = FakeFactory(summary_docs([raw_doc("mp-2657")]))
    df = fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=factory)
    (call,) = factory.summary.calls
    assert call["include_gnome"] is False  # explicit: mp-api's own default is True
    assert df.attrs["include_gnome"] is False

    factory = FakeFactory(summary_docs([raw_doc("mp-2657")]))
    df = fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=factory, include_gnome=True)
    (call,) = factory.summary.calls
    assert call["include_gnome"] is True
    assert df.attrs["include_gnome"] is True


def test_mp_empty_result_records_include_gnome() -> None:
    df = fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=FakeFactory([]))
    assert df.attrs["include_gnome"] is False


def _installed_summary_rester() -> Any:
    summary = pytest.importorskip("mp_api.client.routes.materials.summary")
    return summary.SummaryRester


def test_mp_search_kwargs_are_named_parameters_of_installed_mp_api() -> None:
    """Every keyword we send is a named parameter of the installed ``summary.search``.

    mp-api swallows unknown names into ``**kwargs`` and then rejects them ("unknown to
    `search`"), so binding the signature is not enough: each name must be declared.
    """
    import inspect

    params = inspect.signature(_installed_summary_rester().search).parameters
    named = {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    sent = set(mp_mod.build_summary_search_kwargs(["Ti", "O"], limit=10))
    assert "include_gnome" in sent
    assert sent <= named, f"not understood by the installed mp-api: {sorted(sent - named)}"


def test_mp_include_gnome_false_filters_gnome_in_installed_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real (installed) SummaryRester turns our kwargs into a query without GNoME."""
    from mp_api.client.core import BaseRester

    rester_cls = _installed_summary_rester()
    sent: list[dict[str, Any]] = []

    def fake_search(self: Any, **query: Any) -> list[Any]:
        sent.append(query)
        return []

    monkeypatch.setattr(BaseRester, "_search", fake_search)
    rester = object.__new__(rester_cls)  # no network, no key: only the query building runs
    rester.search(**mp_mod.build_summary_search_kwargs(["Ti", "O"], limit=10))
    (query,) = sent
    assert query["batch_id_not_eq"] == "gnome_r2scan_statics"
    assert query["_sort_fields"] == "material_id" and query["deprecated"] is False

    sent.clear()
    rester.search(**mp_mod.build_summary_search_kwargs(["Ti", "O"], limit=10, include_gnome=True))
    assert "batch_id_not_eq" not in sent[0]


# Letter-style Materials Project ids (emmet-core ``AlphaID``): the body is a base-26 number
# written with a-z (a = 0, so leading a's are padding). mp-3347529 is the last numbered id;
# the next one is mp-hilze (== mp-aahilze == 3347530). mp-lxf == 8039 (the server's letter form
# of the legacy mp-8039).


def test_mp_letter_style_ids_sort_by_value_not_text() -> None:
    ids = ["mp-hilzf", "mp-aahilze", "mp-3347529", "mp-lxf", "mp-149"]
    factory = FakeFactory([raw_doc(i) for i in ids])  # dicts: ids exactly as the server sends
    df = fetch_mp(["Ti", "O"], limit=5, api_key=SECRET, rester_factory=factory)
    assert df[Key.entry_id].tolist() == ["mp-149", "mp-lxf", "mp-3347529", "mp-aahilze", "mp-hilzf"]

    df = fetch_mp(["Ti", "O"], limit=3, api_key=SECRET, rester_factory=FakeFactory(
        [raw_doc(i) for i in ids]))
    assert df[Key.entry_id].tolist() == ["mp-149", "mp-lxf", "mp-3347529"]


def test_mp_letter_style_ids_from_mp_api_models_are_plain_strings() -> None:
    docs = summary_docs([raw_doc("mp-hilze"), raw_doc("mp-2657"), raw_doc("mp-lxf")])
    df = fetch_mp(["Ti", "O"], api_key=SECRET, rester_factory=FakeFactory(docs))
    ids = df[Key.entry_id].tolist()
    assert all(type(x) is str for x in ids)
    assert len(ids) == 3 and df.attrs["dropped_malformed"] == 0
    # legacy-range letter ids may come back in either form (emmet-core >= 0.85 gives mp-8039)
    assert ids[0] == "mp-2657" and ids[1] in ("mp-8039", "mp-lxf")
    assert ids[2].startswith("mp-") and ids[2].endswith("hilze")  # possibly padded with a's


def test_id_sort_key_natural_order_for_numbered_and_letter_ids() -> None:
    from alhelpers.data._rows import id_sort_key

    ordered = ["mp-2", "mp-10", "mp-149", "mp-lxf", "mp-3347529", "mp-hilze", "mp-aahilzf",
               "mp-zzzzzz", "mp-baaaaaa"]
    assert sorted(reversed(ordered), key=id_sort_key) == ordered
    assert id_sort_key("mp-zz")[:2] < id_sort_key("mp-baa")[:2]  # 675 < 676, unlike the text
    assert id_sort_key("mp-aahilze")[:2] == id_sort_key("mp-hilze")[:2]  # same id, padded
    assert sorted(["10", "9", "100"], key=id_sort_key) == ["9", "10", "100"]  # OQMD entry ids


# =============================================================================================
# OQMD: fake requests.Session
# =============================================================================================


def oqmd_record(entry_id: int, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": "TiO2",
        "entry_id": entry_id,
        "delta_e": -3.4 + entry_id * 1e-3,
        "band_gap": 1.9,
        "stability": 0.0 if entry_id % 2 == 0 else 0.12,
        "volume": 62.4,
        "natoms": 6,
    }
    record.update(overrides)
    return record


def oqmd_page(
    data: list[Any], *, offset: int, limit: int, available: int
) -> dict[str, Any]:
    """A page shaped like qmpy's QmpyPagination response."""
    base = f"{OQMD_URL}?fields=name%2Centry_id&filter=element_set%3D%28Ti%2CO%29"
    nxt = f"{base}&limit={limit}&offset={offset + limit}" if offset + limit < available else None
    prev = f"{base}&limit={limit}&offset={max(offset - limit, 0)}" if offset > 0 else None
    return {
        "links": {
            "next": nxt,
            "previous": prev,
            "base_url": {"href": "https://oqmd.org/oqmdapi", "meta": {"_oqmd_version": "1.0"}},
        },
        "resource": {},
        "data": data,
        "meta": {
            "query": {"representation": "/formationenergy?..."},
            "api_version": "1.0",
            "time_stamp": "2024-01-01 00:00:00",
            "data_returned": len(data),
            "data_available": available,
            "comments": "",
            "query_tree": "",
            "more_data_available": nxt is not None or prev is not None,
        },
        "response_message": "OK",
    }


def http_response(
    status: int = 200,
    payload: Any = None,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests",
                       500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "")
    response._content = body if body is not None else json.dumps(payload).encode()
    response.headers["Content-Type"] = "application/json"
    response.headers.update(headers or {})
    response.url = OQMD_URL
    return response


Outcome = requests.Response | Exception


def position(params: Mapping[str, Any]) -> int:
    """Where in the result list a request starts: ``sort_offset`` when sorting, else ``offset``.

    qmpy's ``FormationEnergyList`` pages a sorted query with ``sort_offset`` (the ``offset`` of
    the pagination is applied afterwards, inside the sorted slice).
    """
    if params.get("sort_by"):
        return int(params.get("sort_offset", 0)) + int(params.get("offset", 0))
    return int(params.get("offset", 0))


class FakeSession:
    """``requests.Session`` stand-in: each GET at position ``p`` (see :func:`position`) pops the
    next scripted outcome for ``p``.

    ``server`` answers positions with no scripted outcome left (a well-behaved OQMD).
    """

    def __init__(
        self,
        script: Mapping[int, list[Outcome]] | None = None,
        server: Callable[[Mapping[str, Any]], Outcome] | None = None,
    ) -> None:
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.server = server
        self.calls: list[dict[str, Any]] = []
        self.closed = False

    def get(self, url: str, params: Mapping[str, Any] | None = None,
            timeout: float | None = None) -> requests.Response:
        params = dict(params or {})
        self.calls.append({"url": url, "params": params, "timeout": timeout})
        queue = self.script.get(position(params), [])
        outcome = queue.pop(0) if queue else (self.server(params) if self.server else None)
        if outcome is None:
            raise AssertionError(f"unexpected request {params}")
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self) -> None:
        self.closed = True


def _sort_value(record: Any, field: str) -> float:
    try:
        return float(record[field])
    except (KeyError, TypeError, ValueError):
        return float("inf")


def oqmd_server(records: list[dict[str, Any]]) -> Callable[[Mapping[str, Any]], Outcome]:
    """A fake OQMD serving ``records`` as qmpy's ``FormationEnergyList`` does.

    Without ``sort_by``: limit/offset pagination in storage order. With ``sort_by`` (only
    ``delta_e`` and ``stability`` sort; any other value is silently ignored, as in qmpy), the
    sorted list is first cut to ``[sort_offset : sort_offset + limit]`` and *then* paginated
    with ``offset``/``limit`` -- so ``links.next`` is null and ``data_available`` is the size of
    that slice on every page.
    """

    def serve(params: Mapping[str, Any]) -> Outcome:
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 50))
        rows = list(records)
        key = params.get("sort_by")
        if key:
            if key in ("delta_e", "stability"):
                desc = params.get("desc") in ("T", "t", "True", "true")
                rows.sort(key=lambda r: _sort_value(r, key), reverse=desc)
            sort_offset = int(params.get("sort_offset", 0))
            rows = rows[sort_offset: sort_offset + limit]
        return http_response(
            200, oqmd_page(rows[offset: offset + limit], offset=offset, limit=limit,
                           available=len(rows))
        )

    return serve


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def test_oqmd_paginates_across_three_pages() -> None:
    records = [oqmd_record(i) for i in range(1, 8)]  # 7 entries, pages of 3 -> 3 pages
    session = FakeSession(server=oqmd_server(records))
    sleep = SleepRecorder()
    df = fetch_oqmd(["Ti", "O"], limit=100, page_size=3, session=session, sleep=sleep)

    assert len(session.calls) == 3  # links.next is null on every sorted page: not the end
    assert [position(c["params"]) for c in session.calls] == [0, 3, 6]
    first = session.calls[0]
    assert first["url"] == "https://oqmd.org/oqmdapi/formationenergy"
    assert first["params"]["fields"] == "name,entry_id,delta_e,band_gap,stability,volume,natoms"
    assert first["params"]["filter"] == "element_set=(Ti,O)"
    assert first["params"]["format"] == "json"
    assert first["params"]["limit"] == 3
    assert first["timeout"] == 30.0
    assert sleep.delays == []
    assert not session.closed  # a caller's session is not closed

    assert df[Key.entry_id].tolist() == [str(i) for i in range(1, 8)]
    assert df.attrs["partial"] is False
    assert df.attrs["dropped_malformed"] == 0


def test_oqmd_tidy_columns_and_dtypes() -> None:
    records = [oqmd_record(2, stability=-0.01), oqmd_record(3, stability=0.2, band_gap=0.0),
               oqmd_record(4, stability=None, natoms=None, band_gap=None)]
    df = fetch_oqmd(["Ti", "O"], session=FakeSession(server=oqmd_server(records)),
                    sleep=SleepRecorder())

    assert list(df.columns) == [
        Key.source, Key.dataset, Key.entry_id, Key.formula, Key.nsites, Key.target,
        Key.band_gap, Key.volume, Key.e_above_hull, "oqmd_stability", Key.is_stable,
    ]
    assert (df[Key.source] == "oqmd").all() and (df[Key.dataset] == "oqmd_api").all()
    assert all(type(x) is str for x in df[Key.entry_id])
    assert df[Key.formula].tolist() == ["TiO2"] * 3
    assert df[Key.nsites].dtype == "Int64"
    assert df[Key.nsites].iloc[0] == 6 and pd.isna(df[Key.nsites].iloc[2])
    for col in (Key.target, Key.band_gap, Key.volume, Key.e_above_hull, "oqmd_stability"):
        assert df[col].dtype == "float64", col
    assert df[Key.target].iloc[0] == pytest.approx(-3.398)
    assert df[Key.volume].iloc[0] == pytest.approx(62.4)  # per cell, as OQMD gives it
    assert df[Key.e_above_hull].iloc[1] == pytest.approx(0.2)
    assert df[Key.is_stable].dtype == "boolean"
    assert df[Key.is_stable].iloc[0] and not df[Key.is_stable].iloc[1]
    assert pd.isna(df[Key.is_stable].iloc[2]) and pd.isna(df[Key.band_gap].iloc[2])


def test_oqmd_limit_respected() -> None:
    records = [oqmd_record(i) for i in range(1, 11)]
    session = FakeSession(server=oqmd_server(records))
    df = fetch_oqmd(["Ti", "O"], limit=6, page_size=4, session=session, sleep=SleepRecorder())
    assert len(df) == 6
    assert [(position(c["params"]), c["params"]["limit"]) for c in session.calls] == [(0, 4), (4, 2)]


def test_oqmd_http_500_then_success_retries_with_growing_delays() -> None:
    records = [oqmd_record(1), oqmd_record(2)]
    session = FakeSession(
        script={0: [http_response(500, {"detail": "error"}), http_response(503, {})]},
        server=oqmd_server(records),
    )
    sleep = SleepRecorder()
    df = fetch_oqmd(["Ti", "O"], session=session, sleep=sleep, backoff=0.5)
    assert len(df) == 2
    assert len(session.calls) == 3
    assert sleep.delays == [0.5, 1.0]
    assert df.attrs["partial"] is False


def test_oqmd_429_honours_retry_after() -> None:
    session = FakeSession(
        script={0: [http_response(429, {}, headers={"Retry-After": "7"})]},
        server=oqmd_server([oqmd_record(1)]),
    )
    sleep = SleepRecorder()
    df = fetch_oqmd(["Ti", "O"], session=session, sleep=sleep, backoff=1.0)
    assert len(df) == 1 and sleep.delays == [7.0]


def test_oqmd_connection_error_and_bad_json_are_retried() -> None:
    session = FakeSession(
        script={0: [requests.ConnectionError("refused"),
                    http_response(200, body=b"<html>maintenance</html>")]},
        server=oqmd_server([oqmd_record(1)]),
    )
    sleep = SleepRecorder()
    df = fetch_oqmd(["Ti", "O"], session=session, sleep=sleep)
    assert len(df) == 1 and sleep.delays == [1.0, 2.0]


def test_oqmd_timeout_on_page_two_keeps_partial_result(warning_text) -> None:
    records = [oqmd_record(i) for i in range(1, 8)]
    session = FakeSession(
        script={3: [requests.Timeout("read timed out")] * 3},
        server=oqmd_server(records),
    )
    sleep = SleepRecorder()
    with pytest.warns(UserWarning, match=r"Keeping the 3 entries") as rec:
        df = fetch_oqmd(["Ti", "O"], page_size=3, max_retries=2, session=session, sleep=sleep)

    assert df.attrs["partial"] is True
    assert df[Key.entry_id].tolist() == ["1", "2", "3"]
    assert sleep.delays == [1.0, 2.0]
    assert [position(c["params"]) for c in session.calls] == [0, 3, 3, 3]
    message = warning_text(rec, r"Keeping the 3 entries")
    assert "timed out" in message and "page 2" in message and "partial" in message


def test_oqmd_404_raises_at_once() -> None:
    session = FakeSession(script={0: [http_response(404, {"detail": "Not found."})]})
    sleep = SleepRecorder()
    with pytest.raises(OQMDError, match=r"HTTP 404") as info:
        fetch_oqmd(["Ti", "O"], session=session, sleep=sleep)
    assert not isinstance(info.value, OQMDUnavailableError)
    assert len(session.calls) == 1 and sleep.delays == []
    assert "not retried" in str(info.value)


def test_oqmd_first_page_timeout_raises() -> None:
    session = FakeSession(script={0: [requests.Timeout("connect timed out")] * 4})
    sleep = SleepRecorder()
    with pytest.raises(OQMDError) as info:
        fetch_oqmd(["Ti", "O"], session=session, sleep=sleep, max_retries=3, backoff=1.0)
    message = str(info.value)
    assert "timed out" in message and "first page" in message
    assert 'source="snapshot"' in message
    assert len(session.calls) == 4
    assert sleep.delays == [1.0, 2.0, 4.0]


def test_oqmd_malformed_rows_dropped_and_counted(warning_text) -> None:
    good = oqmd_record(1)
    no_delta = oqmd_record(2)
    del no_delta["delta_e"]
    no_id = oqmd_record(5)
    no_id["entry_id"] = None
    records = [good, no_delta, oqmd_record(3, delta_e="abc"), oqmd_record(4, delta_e=None),
               no_id, oqmd_record(6, delta_e="-1.5")]
    session = FakeSession(server=oqmd_server(records))
    with pytest.warns(UserWarning, match=r"dropped 4 malformed entries of 6") as rec:
        df = fetch_oqmd(["Ti", "O"], session=session, sleep=SleepRecorder())
    assert df.attrs["dropped_malformed"] == 4
    assert df[Key.entry_id].tolist() == ["1", "6"]
    assert df[Key.target].tolist() == pytest.approx([-3.399, -1.5])  # numeric strings are fine
    message = warning_text(rec, r"dropped 4 malformed entries of 6")
    assert "missing delta_e" in message and "non-numeric" in message


def test_oqmd_makes_and_closes_its_own_session(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeSession] = []

    def make() -> FakeSession:
        made.append(FakeSession(server=oqmd_server([oqmd_record(1)])))
        return made[-1]

    monkeypatch.setattr(oqmd_mod.requests, "Session", make)
    df = fetch_oqmd(["C"], sleep=SleepRecorder())
    assert len(df) == 1 and made[0].closed
    assert made[0].calls[0]["params"]["filter"] == "element_set=(C)"


@pytest.mark.parametrize(
    ("elements", "options"),
    [([], {}), (["Ti", "Q"], {}), (["Ti"], {"limit": 0}), (["Ti"], {"page_size": 0}),
     (["Ti"], {"max_retries": -1})],
)
def test_oqmd_rejects_bad_arguments(elements: list[str], options: dict[str, Any]) -> None:
    session = FakeSession()
    with pytest.raises(ValueError):
        fetch_oqmd(elements, session=session, sleep=SleepRecorder(), **options)
    assert session.calls == []


def test_oqmd_requests_stable_order_without_duplicates() -> None:
    """Pages are asked for sorted by delta_e (paged with sort_offset) and with noduplicate."""
    deltas = [-1.0, -3.0, -2.0, -0.5, -2.5, -4.0, -1.5]  # storage order != delta_e order
    records = [oqmd_record(i, delta_e=d) for i, d in enumerate(deltas, start=1)]
    session = FakeSession(server=oqmd_server(records))
    df = fetch_oqmd(["Ti", "O"], limit=100, page_size=3, session=session, sleep=SleepRecorder())

    for call in session.calls:
        params = call["params"]
        assert params["sort_by"] == "delta_e"
        assert params["noduplicate"] == "True"
        assert params["offset"] == 0  # qmpy applies offset inside the sorted slice
    assert [c["params"]["sort_offset"] for c in session.calls] == [0, 3, 6]
    assert df[Key.entry_id].tolist() == [str(i) for i in range(1, 8)]  # rows in entry_id order
    assert df.attrs["sort_by"] == "delta_e"
    assert df.attrs["dropped_duplicates"] == 0

    # a limit below the total takes the first entries of the sorted list (lowest delta_e)
    session = FakeSession(server=oqmd_server(records))
    df = fetch_oqmd(["Ti", "O"], limit=4, page_size=3, session=session, sleep=SleepRecorder())
    assert [(c["params"]["sort_offset"], c["params"]["limit"]) for c in session.calls] == [
        (0, 3), (3, 1)]
    assert df[Key.entry_id].tolist() == ["2", "3", "5", "6"]
    assert sorted(df[Key.target]) == pytest.approx([-4.0, -3.0, -2.5, -2.0])


def test_oqmd_sorted_paging_stops_on_a_short_or_empty_page() -> None:
    records = [oqmd_record(i) for i in range(1, 7)]  # 6 entries, pages of 3: 3 + 3 + (0)
    session = FakeSession(server=oqmd_server(records))
    df = fetch_oqmd(["Ti", "O"], limit=100, page_size=3, session=session, sleep=SleepRecorder())
    assert len(df) == 6
    assert [c["params"]["sort_offset"] for c in session.calls] == [0, 3, 6]

    session = FakeSession(server=oqmd_server(records))
    fetch_oqmd(["Ti", "O"], limit=100, page_size=4, session=session, sleep=SleepRecorder())
    assert [c["params"]["sort_offset"] for c in session.calls] == [0, 4]  # 4 + 2: short page


def shifting_server(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> Callable[[Mapping[str, Any]], Outcome]:
    """A fake OQMD whose data change after the first request (``before``, then ``after``)."""
    first, then = oqmd_server(before), oqmd_server(after)
    served: list[int] = []

    def serve(params: Mapping[str, Any]) -> Outcome:
        served.append(1)
        return (first if len(served) == 1 else then)(params)

    return serve


def test_oqmd_page_overlap_drops_duplicates_and_counts_them(warning_text) -> None:
    """Entry 0 appears at the top of the list after page 1: everything shifts down by one, and
    entry 3 comes back on page 2. It is kept once, and the drop is reported."""
    records = [oqmd_record(i) for i in range(1, 8)]
    inserted = [oqmd_record(0, delta_e=-9.0), *records]
    session = FakeSession(server=shifting_server(records, inserted))
    with pytest.warns(UserWarning, match=r"dropped 1 duplicate entry") as rec:
        df = fetch_oqmd(["Ti", "O"], limit=100, page_size=3, session=session,
                        sleep=SleepRecorder())

    assert df[Key.entry_id].tolist() == [str(i) for i in range(1, 8)]
    assert df[Key.entry_id].is_unique
    assert df.attrs["dropped_duplicates"] == 1
    assert [c["params"]["sort_offset"] for c in session.calls] == [0, 3, 6]
    message = warning_text(rec, r"dropped 1 duplicate entry")
    assert "entry_id" in message and "df.attrs['dropped_duplicates']" in message


def test_oqmd_duplicates_do_not_count_towards_limit() -> None:
    records = [oqmd_record(i) for i in range(1, 8)]
    inserted = [oqmd_record(-1, delta_e=-9.0), oqmd_record(0, delta_e=-8.0), *records]
    session = FakeSession(server=shifting_server(records, inserted))  # 2 and 3 come back
    with pytest.warns(UserWarning, match=r"dropped 2 duplicate entries"):
        df = fetch_oqmd(["Ti", "O"], limit=5, page_size=3, session=session,
                        sleep=SleepRecorder())
    assert df[Key.entry_id].tolist() == ["1", "2", "3", "4", "5"]
    assert df.attrs["dropped_duplicates"] == 2


def test_oqmd_unsorted_option_pages_with_offset() -> None:
    records = [oqmd_record(i) for i in range(1, 8)]
    session = FakeSession(server=oqmd_server(records))
    df = fetch_oqmd(["Ti", "O"], page_size=3, sort_by=None, session=session,
                    sleep=SleepRecorder())
    assert len(df) == 7 and df.attrs["sort_by"] is None
    assert [c["params"]["offset"] for c in session.calls] == [0, 3, 6]
    for call in session.calls:
        assert "sort_by" not in call["params"] and "sort_offset" not in call["params"]
        assert call["params"]["noduplicate"] == "True"


def test_oqmd_rejects_sort_keys_the_api_ignores() -> None:
    session = FakeSession()
    with pytest.raises(ValueError, match=r"delta_e.*stability") as info:
        fetch_oqmd(["Ti", "O"], sort_by="entry_id", session=session, sleep=SleepRecorder())
    assert "silently ignore" in str(info.value)
    assert session.calls == []


def test_oqmd_stability_kept_apart_from_mp_style_e_above_hull() -> None:
    """OQMD's stability is negative below the hull; e_above_hull keeps MP's meaning (>= 0)."""
    records = [oqmd_record(1, stability=-0.05), oqmd_record(2, stability=0.0),
               oqmd_record(3, stability=0.2), oqmd_record(4, stability=None)]
    df = fetch_oqmd(["Ti", "O"], session=FakeSession(server=oqmd_server(records)),
                    sleep=SleepRecorder()).set_index(Key.entry_id)

    assert df.loc["1", "oqmd_stability"] == pytest.approx(-0.05)  # OQMD's value, as given
    assert df.loc["1", Key.e_above_hull] == 0.0  # on the hull: MP's energy_above_hull is 0
    assert bool(df.loc["1", Key.is_stable]) and bool(df.loc["2", Key.is_stable])
    assert df.loc["3", "oqmd_stability"] == pytest.approx(0.2)
    assert df.loc["3", Key.e_above_hull] == pytest.approx(0.2)
    assert not bool(df.loc["3", Key.is_stable])
    assert pd.isna(df.loc["4", "oqmd_stability"]) and pd.isna(df.loc["4", Key.e_above_hull])
    assert pd.isna(df.loc["4", Key.is_stable])
    assert (df[Key.e_above_hull].dropna() >= 0).all()
