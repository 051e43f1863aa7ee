"""Timing, memory and reporting helpers shared by every benchmark."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Result:
    """One measured quantity: the median of its runs, with its target and the command behind it."""

    section: str
    name: str
    value: float
    unit: str
    runs: list[float] = field(default_factory=list)
    target: str = ""
    met: bool | None = None
    note: str = ""


def median_of(fn: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    values = [fn() for _ in range(repeats)]
    return statistics.median(values), values


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def peak_rss_mb_of_children() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run_python(code: str, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run code in a fresh interpreter; its last stdout line is JSON. Reports its own peak RSS."""
    wrapped = code + (
        "\nimport resource, json as _j\n"
        "print(_j.dumps({**RESULT, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def stop_server(process: subprocess.Popen) -> None:
    """Stop a server started in its own session: SIGTERM to its group, SIGKILL after 30 s."""
    import signal

    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": memory, "python": platform.python_version(),
            "os": platform.platform()}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def save_json(results: list[Result], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), "results": [asdict(r) for r in results]}, indent=1))


def markdown(results: list[Result], command: str, notes: str = "") -> str:
    info = machine()
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM, Python {info['python']}, "
        f"{info['os']}.",
        f"Command: `{command}` (values are medians of the listed runs).",
        "",
    ]
    for section in dict.fromkeys(r.section for r in results):
        lines += [f"## {section}", "", "| measure | value | runs | target | met |", "| --- | --- | --- | --- | --- |"]
        for r in (r for r in results if r.section == section):
            runs = ", ".join(_fmt(v) for v in r.runs) if len(r.runs) > 1 else ""
            met = "" if r.met is None else ("yes" if r.met else "**no**")
            lines.append(f"| {r.name} | {_fmt(r.value)} {r.unit} | {runs} | {r.target} | {met} |")
        section_notes = [r for r in results if r.section == section and r.note]
        if section_notes:
            lines.append("")
            lines += [f"- {r.name}: {r.note}" for r in section_notes]
        lines.append("")
    if notes:
        lines += [notes, ""]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"
