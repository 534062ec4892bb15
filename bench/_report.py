"""Benchmark figures as files: each benchmark writes its table to docs/results/NAME-CPUKIND.md, headed with the
date, the CPU and the command that produced it, and the README's benchmark lines are generated from those files
(`python bench/_report.py` rewrites the block between the README's `results` markers; a fast test checks that
block is current), so a quoted figure is always one a script measured.

    python bench/_report.py          # rewrite the README's block from docs/results/
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
HEADLINE = re.compile(r"^\*\*Headline:\*\* (.+)$", re.M)
MEASURED = re.compile(r"^Measured (\S+) on (.+?) by `", re.M)


def cpu_kind() -> tuple[str, str]:
    """(a file-name key, a description) for this CPU: the instruction set that decides training speed."""
    from convlens.ml.hardware import cpu

    c = cpu()
    if "amx_bf16" in c.flags:
        key, isa = "amx", "AMX"
    elif "avx512_bf16" in c.flags:
        key, isa = "avx512-bf16", "AVX-512-BF16"
    elif "avx512f" in c.flags:
        key, isa = "avx512", "AVX-512 without bf16"
    else:
        key, isa = "avx2", "AVX2 only"
    return key, f"{c.model}, {c.cores} cores, {isa}"


@dataclass
class Table:
    """One benchmark's figures: `headline` is the line the README quotes; `rows` the table docs/results holds."""

    name: str
    title: str
    headline: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: str = ""

    def markdown(self, command: str, measured: str, cpu: str) -> str:
        lines = [f"# {self.title}", "", f"Measured {measured} on {cpu} by `{command}`.", "",
                 f"**Headline:** {self.headline}", "",
                 "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        if self.notes:
            lines += ["", self.notes.strip()]
        return "\n".join(lines) + "\n"


def write(table: Table) -> Path:
    """docs/results/NAME-CPUKIND.md, replacing the previous run's on this CPU kind; then the README's block."""
    key, cpu = cpu_kind()
    command = "python " + " ".join(shlex.quote(a) for a in [f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{table.name}-{key}.md"
    path.write_text(table.markdown(command, date.today().isoformat(), cpu))
    README.write_text(with_block(README.read_text()))
    print(f"wrote {path.relative_to(ROOT)} and the README's results block", flush=True)
    return path


def block() -> str:
    """The README's benchmark lines: each results file's headline, its CPU and date, and a link to its table."""
    lines = []
    for path in sorted(RESULTS.glob("*.md")):
        text = path.read_text()
        headline, measured = HEADLINE.search(text), MEASURED.search(text)
        if headline and measured:
            title = text.splitlines()[0].lstrip("# ")
            lines.append(f"- [{title}](docs/results/{path.name}) ({measured.group(2)}, {measured.group(1)}): "
                         f"{headline.group(1)}")
    return "\n".join([START, *lines, END])


def with_block(readme: str) -> str:
    start, end = readme.index(START), readme.index(END) + len(END)
    return readme[:start] + block() + readme[end:]


if __name__ == "__main__":
    README.write_text(with_block(README.read_text()))
    print(block())
