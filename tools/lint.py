"""`ruff check` (settings in ruff.toml), less one finding ruff cannot be told to skip: nbdev writes each module's
`__all__ = [...]` itself, wrapping the list at 120 columns after the 10 characters of `__all__ = `. Everything else
ruff reports fails the check. Usage: python tools/lint.py [paths] (default: brainseg tests bench tools)."""
import json, subprocess, sys
from pathlib import Path

def findings(paths) -> list:
    "Ruff's findings, except a too-long first line of an nbdev-generated `__all__`."
    run = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--output-format', 'json', *paths],
                         capture_output=True, text=True)
    if run.returncode not in (0, 1): raise SystemExit(f"ruff failed: {run.stderr.strip()}")
    keep = []
    for f in json.loads(run.stdout):
        line = Path(f['filename']).read_text().splitlines()[f['location']['row'] - 1]
        if f['code'] == 'E501' and line.startswith('__all__ = [') and len(line) <= 130: continue
        keep.append(f)
    return keep

if __name__ == '__main__':
    found = findings(sys.argv[1:] or ['brainseg', 'tests', 'bench', 'tools'])
    for f in found:
        print(f"{f['filename']}:{f['location']['row']}:{f['location']['column']}: {f['code']} {f['message']}")
    print(f"lint: {len(found)} problem{'s' * (len(found) != 1)}" if found else "lint: ruff finds nothing")
    sys.exit(1 if found else 0)
