"""Strings from a run (adapter/dataset names, error messages) render as text, never as markup."""

from __future__ import annotations

from pathlib import Path

from uqbench.report import write_report

EVIL_ADAPTER = "<script>alert(1)</script>"
EVIL_DATASET = 'toy-"quoted"&<b>bold</b>'
EVIL_ERROR = 'ValueError: <img src=x onerror="alert(2)"> and </script><script>alert(3)</script>'


def _render_evil(make_run_dir, parse_page):
    run = make_run_dir(
        adapters=("deterministic", EVIL_ADAPTER),
        datasets=(EVIL_DATASET, "digits"),
        seeds=(0, 1),
        latent=False,
        failures={(EVIL_ADAPTER, "digits", 1): EVIL_ERROR},
    )
    html = write_report(run).read_text(encoding="utf-8")
    return run, html, parse_page(html)


def test_run_strings_render_as_text(make_run_dir, parse_page) -> None:
    _, html, page = _render_evil(make_run_dir, parse_page)
    # Exactly two script elements: the JSON data block and the inline table sorter.
    assert [a.get("type") for a, _ in page.scripts] == ["application/json", None]
    assert all(a.get("src") is None for a, _ in page.scripts)
    for tag, attrs in page.elements:
        assert tag not in ("img", "b", "iframe", "object"), f"live <{tag}> from run data"
        assert not any(k.startswith("on") for k in attrs), f"event handler attribute on <{tag}>"
    for raw in ("<script>alert(1)", "<img src=x", "<b>bold</b>", "alert(3)</script>"):
        assert raw not in html
    text = "".join(page.text)
    # The visible text carries the strings verbatim (in tables, legends and the failure list).
    assert text.count(EVIL_ADAPTER) >= 3
    assert EVIL_DATASET in text
    assert EVIL_ERROR in text
    # The adapter's figures (legends, titles) are there and escaped too.
    assert page.sections["calibration"]["svg"] == 4
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_json_blob_holds_the_exact_strings(make_run_dir, parse_page) -> None:
    run, html, page = _render_evil(make_run_dir, parse_page)
    blob = page.data_blob()
    assert [a["name"] for a in blob["adapters"]] == ["deterministic", EVIL_ADAPTER]
    assert [d["name"] for d in blob["datasets"]] == [EVIL_DATASET, "digits"]
    assert blob["failures"][0]["error"] == EVIL_ERROR
    # The blob has no raw "<" at all, so no string can end the script element early.
    start = html.index('id="uqbench-data">') + len('id="uqbench-data">')
    end = html.index("</script>", start)
    assert "<" not in html[start:end]
    assert isinstance(run, Path)
