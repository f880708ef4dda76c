import subprocess
import sys

import pytest
from conftest import HEADER, REPO_ROOT, SHARED_DATA, valid_lines

from tff_fedmm.cli import main

needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real data not found at {SHARED_DATA}")


def file_text(*lines: str) -> str:
    return "\n".join(lines) + "\n"


GOOD = file_text(HEADER, *valid_lines())
# (files in the data directory, expected fragment after the file name)
BAD_FILES = {
    "missing column": (file_text("userId itemId rate", "u1 i1 5.0"), ":1: missing column date"),
    "extra column": (file_text(HEADER + " price", "u1 i1 5.0 2020-01-01 9"), ":1: unexpected column 'price'"),
    "non-numeric rating": (file_text(HEADER, *valid_lines(), "u1 i9 five 2020-01-01"), ":14: rate 'five' is not a"),
    "unparsable date": (file_text(HEADER, "u1 i1 5.0 2020-01-01", "u1 i2 5.0 01/02/2020"), ":3: date '01/02/2020'"),
    "NaN rating": (file_text(HEADER, "u1 i1 nan 2020-01-01"), ":2: rate is empty or NaN"),
    "empty cell": (file_text("userId,itemId,rate,date", "u,i,5,2020-01-01", "u,,5,2020-01-02"), ":3: itemId is empty"),
    "missing field": (file_text(HEADER, "u1 i1 5.0 2020-01-01", "u1 i2 2020-01-02"), ":3: 3 fields; expected 4"),
    "blank lines keep numbering": (file_text(HEADER, "u1 i1 5.0 2020-01-01", "", "u1 i2 x 2020-01-02"), ":4: rate 'x'"),
    "empty file": ("", ": empty file"),
    "header only": (file_text(HEADER), ": no data lines"),
    "too small to split": (file_text(HEADER, "u1 i1 5.0 2020-01-01", "u1 i2 5.0 2020-01-02"), ": too small to split"),
}


def run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err.splitlines()


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_is_one_line_naming_file_and_line(market_dir, capsys, case):
    content, fragment = BAD_FILES[case]
    data = market_dir({"de_5core.txt": GOOD, "fr_5core.txt": content})
    status, out, err = run(["data", "summary", "--data", str(data)], capsys)
    assert status == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("fedmm: error: ")
    assert f"fr_5core.txt{fragment}" in err[0]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["data", "summary", "--data", "{tmp}/nowhere"], "nowhere: no such directory"),
        (["data", "summary", "--data", "{tmp}"], "no market files"),
        (["data", "summary", "--data", "{data}", "--markets", "de,xx"], "no market 'xx'; available markets: de"),
        (["data", "summary", "--markets", "m0,zz"], "synthetic data: no market 'zz'"),
        (["data", "summary", "--markets", ","], "argument --markets: expected comma-separated market names"),
        (["data", "summary", "--data-seed", "x"], "argument --data-seed: invalid int value"),
        (["data"], "required: COMMAND"),
        ([], "required: COMMAND"),
    ],
)
def test_usage_errors_are_one_line(market_dir, tmp_path, capsys, argv, fragment):
    data = market_dir({"de_5core.txt": GOOD})
    (tmp_path / "empty").mkdir()
    argv = [arg.format(tmp=tmp_path / "empty", data=data) for arg in argv]
    status, out, err = run(argv, capsys)
    assert status == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("fedmm: error: ") and fragment in err[0]


def test_synthetic_summary_with_selected_markets(capsys):
    status, out, err = run(["data", "summary", "--markets", "m1,m3", "--data-seed", "2"], capsys)
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == ["market", "m1", "m3"]
    assert "400" in out.splitlines()[1].split()


@needs_shared_data
@pytest.mark.shared_data
def test_real_data_summary_counts(capsys):
    status, out, _ = run(["data", "summary", "--data", str(SHARED_DATA)], capsys)
    assert status == 0
    rows = {line.split()[0]: line.split()[1:8] for line in out.splitlines()[1:]}
    # rows (data lines in the file), interactions (distinct user-item pairs), users, items, train, valid, test
    assert rows == {
        "de": ["17,300", "16,647", "1,851", "2,179", "12,945", "1,851", "1,851"],
        "fr": ["17,624", "17,154", "1,838", "1,879", "13,478", "1,838", "1,838"],
        "in": ["2,015", "1,973", "239", "470", "1,495", "239", "239"],
        "jp": ["4,485", "4,355", "487", "955", "3,381", "487", "487"],
        "mx": ["17,095", "16,933", "1,878", "1,645", "13,179", "1,877", "1,877"],
    }


def imported_modules_after(argv: list[str]) -> set[str]:
    script = (
        "import sys\nfrom tff_fedmm.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(' '.join(m for m in ('tensorflow', 'tensorflow_federated') if m in sys.modules), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(result.stderr.split())


def test_help_and_data_summary_do_not_import_tensorflow():
    assert imported_modules_after(["--help"]) == set()
    assert imported_modules_after(["data", "summary"]) == set()


def test_entry_modules_and_flag_errors_do_not_import_tensorflow():
    """The lazy imports that remain exist for this (BUILD_NOTES, "Layers"): each entry module imports
    without TensorFlow, and a bad flag of `fedmm compare` is refused before TFF loads."""
    script = ("import sys\nimport tff_fedmm, tff_fedmm.api, tff_fedmm.cli_compare, tff_fedmm.cli_score, "
              "tff_fedmm.worker_cli\nfrom tff_fedmm.cli import main\n"
              "try:\n    code = main(['compare', '--methods', 'nope', '--out', 'unused'])\nexcept SystemExit as e:\n"
              "    code = e.code\nprint('exit', code)\n"
              "print(' '.join(m for m in ('tensorflow', 'tensorflow_federated') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert "--methods" in result.stderr and "nope" in result.stderr
    assert result.stdout.split() == ["exit", "2"]


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "tff_fedmm", "data", "summary", "--markets", "nope"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.strip().startswith("fedmm: error: synthetic data: no market 'nope'")
    assert "Traceback" not in result.stderr
