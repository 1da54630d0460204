"""The lists in tests/conftest.py that schedule the slowest checks first and keep them out of `make test-fast` name
tests, notebooks and fixtures that exist: a renamed test would otherwise fall off its list without a word (run last,
and back in `make test-fast`)."""
import ast
from pathlib import Path

from conftest import SLOWEST_NOTEBOOKS, SLOWEST_TESTS, WHOLE_STUDY_FIXTURES

TESTS = Path(__file__).resolve().parent


def defined_functions(files) -> set:
    "The names of the functions defined in these Python files."
    return {n.name for f in files for n in ast.walk(ast.parse(Path(f).read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def unmatched(prefixes, names) -> list:
    "The prefixes no name starts with (a listed test matches the tests whose name starts with it)."
    return [p for p in prefixes if not any(n.startswith(p) for n in names)]


def test_every_listed_test_notebook_and_fixture_exists():
    tests = {n for n in defined_functions(TESTS.glob("test_*.py")) if n.startswith("test_")}
    assert unmatched(SLOWEST_TESTS, tests) == []
    assert sorted(set(SLOWEST_NOTEBOOKS) - {p.stem for p in (TESTS.parent / "nbs").glob("*.ipynb")}) == []
    assert sorted(WHOLE_STUDY_FIXTURES - defined_functions([TESTS / "conftest.py"])) == []
    assert len(set(SLOWEST_TESTS)) == len(SLOWEST_TESTS) and len(set(SLOWEST_NOTEBOOKS)) == len(SLOWEST_NOTEBOOKS)


def test_a_name_that_no_longer_exists_is_found():
    assert unmatched(["test_a", "test_gone"], {"test_a_thing", "test_other"}) == ["test_gone"]


def test_a_study_asked_for_at_run_time_marks_its_file_slow():
    "A fixture asked for by name inside another fixture is seen, as pytest's own fixture closure would not see it."
    from conftest import asked_at_run_time
    src = 'def results(request):\n    return request.getfixturevalue("study_results")[3]\n'
    assert asked_at_run_time(src) == {"study_results"}
    assert asked_at_run_time('def f(request):\n    return request.getfixturevalue(name)\n') == set()
    assert asked_at_run_time('x = "getfixturevalue(\'study_results\')"\n') == set()   # a string, not a call
    for f in ("test_report_browser.py", "test_validation_report_browser.py"):
        assert asked_at_run_time((TESTS / f).read_text()) & WHOLE_STUDY_FIXTURES, f
