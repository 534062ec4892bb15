"""The README a newcomer reads: short, its links resolve, and its benchmark lines are the ones the scripts under
bench/ wrote (bench/_report.py), not typed figures that can go stale."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import _report  # noqa: E402


def test_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert links and [link for link in links if not link.startswith("http") and not (ROOT / link).exists()] == []


def test_readme_benchmark_lines_are_generated_from_the_results_files():
    text = (ROOT / "README.md").read_text()
    assert _report.with_block(text) == text, "run `python bench/_report.py` after changing docs/results/"
    for path in _report.RESULTS.glob("*-*.md"):
        body = path.read_text()
        assert _report.MEASURED.search(body) and _report.HEADLINE.search(body), path.name


def test_a_results_table_names_its_date_cpu_and_command():
    table = _report.Table("x", "A title", "3.0x faster", ["run", "seconds"], [["a", "1.0"]], "a note")
    text = table.markdown("python bench/bench_x.py --n 3", "2026-12-08", "AMD EPYC, 2 cores, AVX2 only")
    assert _report.MEASURED.search(text).groups() == ("2026-12-08", "AMD EPYC, 2 cores, AVX2 only")
    assert _report.HEADLINE.search(text).group(1) == "3.0x faster" and "| a | 1.0 |" in text
