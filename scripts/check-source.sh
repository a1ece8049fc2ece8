#!/usr/bin/env bash
# Source rules that a compiler does not check, run by scripts/test.sh:
# banned C functions (curl's checksrc list: unbounded copies and parsers that
# cannot report errors) and build scaffolding CMake should not have.
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 - "$@" <<'PY'
import re, subprocess, sys

BANNED = {
    "strcpy": "memcpy with a checked length, or snprintf",
    "strcat": "snprintf into a sized buffer",
    "sprintf": "snprintf",
    "vsprintf": "vsnprintf",
    "gets": "fgets",
    "strtok": "strtok_r or a hand-written split",
    "atoi": "strtol/strtoll with end and range checks",
    "atol": "strtol/strtoll with end and range checks",
    "atoll": "strtoll with end and range checks",
    "strncpy": "snprintf or memcpy (strncpy does not terminate)",
}
call = re.compile(r"(?<![\w.>])(" + "|".join(BANNED) + r")\s*\(")

def strip(text):
    """Comments and string/char literals -> spaces, line numbers kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2); j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif text.startswith("//", i):
            j = text.find("\n", i); j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (j - i - 1) + c); i = j + 1
        else:
            out.append(c); i += 1
    return "".join(out)

files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.c", "*.h"],
                       capture_output=True, text=True, check=True).stdout.split()
bad = []
for f in files:
    try:
        text = open(f, encoding="utf-8", errors="replace").read()
    except OSError:
        continue
    for no, line in enumerate(strip(text).split("\n"), 1):
        for m in call.finditer(line):
            bad.append(f"{f}:{no}: {m.group(1)}() is banned; use {BANNED[m.group(1)]}")

cm = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*CMakeLists.txt", "*.cmake"],
                    capture_output=True, text=True, check=True).stdout.split()
for f in cm:
    for no, line in enumerate(open(f, encoding="utf-8"), 1):
        code = line.split("#", 1)[0]
        if re.search(r"file\s*\(\s*GLOB", code):
            bad.append(f"{f}:{no}: file(GLOB) is banned; list the sources")
        if re.search(r"if\s*\(\s*(EXISTS|TARGET)\b", code):
            bad.append(f"{f}:{no}: if(EXISTS/TARGET) guards are banned; the tree is fixed")

for b in bad:
    print(b, file=sys.stderr)
if bad:
    sys.exit(f"check-source: {len(bad)} problem(s)")
print(f"check-source: {len(files)} C files, {len(cm)} CMake files clean")
PY
