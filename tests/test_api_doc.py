"""docs/api.md is what tests/support/apidoc.py writes from the docstrings, and every public name has one."""

from pathlib import Path

from tests.support import apidoc

API_MD = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_reference_matches_the_code():
    assert API_MD.read_text() == apidoc.render(), (
        "docs/api.md is stale: run `python -m tests.support.apidoc > docs/api.md`"
    )


def test_every_public_name_has_a_docstring():
    assert apidoc.undocumented() == []


def test_the_reference_names_every_exported_name():
    text = API_MD.read_text()
    import wsdaemon

    for name in wsdaemon.__all__:
        if not name.startswith("__"):
            assert f"`{name}`" in text, name
