"""The table a paper prints: one row per case × method, a mean row per method, the best value per column marked.

Written three ways from the same rows: results.json (every measure, plus why any row is missing), table.md (for a
README or a paper draft) and table.csv (for a spreadsheet; the `best` column names the columns a row is best in).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from synclora.evaluate.cases import Method


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    better: str  # "high", "low", "zero" (closest to 0), "one" (closest to 1) or "" (not ranked)
    digits: int = 3


COLUMNS = (
    Column("in_sync", "in sync", "high"),
    Column("lag", "lag", "zero"),
    Column("corr", "r", "high"),
    Column("mouth_corr", "mouth r", "high"),
    Column("blinks", "blinks ✓/missed/extra", "low"),
    Column("identity", "identity", "high"),
    # Edit kept is 1 when the edit is there as made; above 1 the result differs from the source more than the edit
    # did (a frozen or smeared region), which is no better than below.
    Column("edit_kept_mean", "edit kept", "one"),
    Column("edit_kept_min", "kept min", "one"),
    Column("face_lost", "face lost", "low", 0),
    Column("flicker", "flicker", "low", 2),
    Column("preservation_psnr", "PSNR kept (dB)", "high", 1),
    Column("seconds", "seconds", "low", 1),
    Column("method_fps", "frames/s", "high", 1),
)


def _number(row: dict, col: Column) -> float | None:
    """The column's value as a number (None: no value); blinks count missed + extra."""
    v = row.get(col.key)
    if col.key == "blinks":
        if not isinstance(v, dict) or not v.get("judged", True):
            return None
        return float(v.get("missed", 0) + v.get("extra", 0))
    if v is None or isinstance(v, (dict, list, str)) or not math.isfinite(float(v)):
        return None
    return float(v)


def _rank_value(row: dict, col: Column) -> float | None:
    """The number a column is ranked by: the value, or its distance to 0 or 1."""
    v = _number(row, col)
    if v is None or col.better not in ("zero", "one"):
        return v
    return abs(v - (col.better == "one"))


def _best(rows: list[dict]) -> dict[int, set[str]]:
    """For each row index, the columns where it holds the best value among `rows` (ties all count)."""
    out: dict[int, set[str]] = {i: set() for i in range(len(rows))}
    for col in COLUMNS:
        vals = {i: _rank_value(r, col) for i, r in enumerate(rows) if "error" not in r}
        vals = {i: v for i, v in vals.items() if v is not None}
        if len(vals) < 2 or not col.better:
            continue
        target = max(vals.values()) if col.better == "high" else min(vals.values())  # low, zero, one: distances
        if all(v == target for v in vals.values()):
            continue  # everyone ties: nothing to point at
        for i, v in vals.items():
            if v == target:
                out[i].add(col.key)
    return out


def _text(row: dict, col: Column) -> str:
    v = row.get(col.key)
    if v is None:
        return "—"
    if col.key == "in_sync":
        if isinstance(v, bool):
            return "yes" if v else "no"
        return f"{v:.0%}"  # a summary row: the share of cases in sync
    if col.key == "blinks":
        if not v.get("judged", True):
            return "hidden"
        return f"{v['matched']:g}/{v['missed']:g}/{v['extra']:g}"
    if col.key == "lag" and isinstance(v, int):
        return f"{v:+d}"
    if isinstance(v, float) and not math.isfinite(v):
        return "—"
    return f"{v:.{col.digits}f}" if isinstance(v, float) else str(v)


def summary(rows: list[dict], methods: list[Method]) -> dict[str, dict]:
    """Per method: means over the cases it has a row for (in sync: the share of them; lag: the mean |lag|;
    blinks: means of the counts)."""
    out = {}
    for m in methods:
        mine = [r for r in rows if r.get("method") == m.name and "error" not in r]
        s: dict = {"cases": len(mine), "missing": sum(1 for r in rows if r.get("method") == m.name and "error" in r)}
        for col in COLUMNS:
            if col.key == "blinks":
                judged = [r["blinks"] for r in mine if r.get("blinks", {}).get("judged", True)]
                s["blinks"] = None if not judged else {
                    k: round(sum(b[k] for b in judged) / len(judged), 2) for k in ("matched", "missed", "extra")}
                continue
            vals = [_number(r, col) for r in mine]
            if col.key == "lag":
                vals = [None if v is None else abs(v) for v in vals]
            vals = [v for v in vals if v is not None]
            s[col.key] = round(sum(vals) / len(vals), 4) if vals else None
        out[m.name] = s
    return out


def _summary_rows(rows: list[dict], methods: list[Method]) -> list[dict]:
    return [{"case": f"mean of {s['cases']}", "method": name, **s} for name, s in summary(rows, methods).items()]


def _grid(rows: list[dict], methods: list[Method]) -> list[tuple[dict, set[str]]]:
    """The rows in table order (case by case, then the mean rows), each with the columns it is best in."""
    out = []
    cases = list(dict.fromkeys(r["case"] for r in rows if r.get("method") is not None))
    for case in cases:
        group = [r for r in rows if r["case"] == case and r.get("method") is not None]
        best = _best(group)
        out += [(r, best[i]) for i, r in enumerate(group)]
    means = _summary_rows(rows, methods)
    best = _best(means)
    out += [(r, best[i]) for i, r in enumerate(means)]
    return out


def markdown(rows: list[dict], methods: list[Method]) -> str:
    """table.md: best per case (and among the means) in bold; missing rows say why underneath."""
    head = ["case", "method", *(c.header for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row, best in _grid(rows, methods):
        if "error" in row:
            cells = ["*missing*"] + [""] * (len(COLUMNS) - 1)
        else:
            cells = [f"**{_text(row, c)}**" if c.key in best else _text(row, c) for c in COLUMNS]
        lines.append("| " + " | ".join([row["case"], row["method"], *cells]) + " |")
    missing = [r for r in rows if "error" in r]
    if missing:
        lines += ["", "Missing rows:", ""]
        lines += [f"- {r['case']}" + (f" / {r['method']}" if r.get("method") else "") + f": {r['error']}"
                  for r in missing]
    lines += ["", "Best per case and among the means in bold. lag: frames, + = result late; r: mean correlation of "
              "the judged cues at lag 0; identity: face similarity to the edited frame; edit kept: share of the "
              "edit present (mean, lowest run); flicker: warp error along the source's motion (lower is steadier); "
              "PSNR kept: the result against the source where the edit changed nothing."]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], methods: list[Method]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = [c.key for c in COLUMNS if c.key != "blinks"]
    w.writerow(["case", "method", *keys, "blinks_matched", "blinks_missed", "blinks_extra", "best", "error"])
    for row, best in _grid(rows, methods):
        b = row.get("blinks") or {}
        vals = ["" if row.get(k) is None else row[k] for k in keys]
        w.writerow([row["case"], row["method"], *vals, b.get("matched", ""), b.get("missed", ""), b.get("extra", ""),
                    " ".join(c.key for c in COLUMNS if c.key in best), row.get("error", "")])
    return buf.getvalue()


def write_all(out: Path, cases: list[str], methods: list[Method], rows: list[dict]) -> Path:
    """results.json, table.md and table.csv in `out`, each written atomically."""
    from synclora.paths import atomic_output

    public = [{k: v for k, v in r.items() if k not in ("curves", "key")} for r in rows]
    data = {
        "cases": cases,
        "methods": [{"name": m.name, "backend": m.backend, "lora": None if m.lora is None else str(m.lora)}
                    for m in methods],
        "rows": [r for r in public if "error" not in r],
        "missing": [r for r in public if "error" in r],
        "summary": summary(rows, methods),
    }
    files = {"results.json": json.dumps(data, indent=2) + "\n", "table.md": markdown(rows, methods),
             "table.csv": to_csv(rows, methods)}
    for name, text in files.items():
        with atomic_output(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return out / "results.json"
