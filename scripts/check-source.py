#!/usr/bin/env python3
"""Check the userspace C of vmaugment against its house style.

QEMU's layout is the style of the userspace parts (HACKING.rst): four
spaces, never tabs; at most 80 columns; no trailing white space; braces
always, on the line of the if, for, while, else or do they belong to; and
every file opens with a comment that says what it is, then names its
licence (SPDX-License-Identifier).  Headers in Linux UAPI style
(include/uapi/, include/vmaugment/host-link.h) are Linux's checkpatch.pl's,
and guest-driver/kernel/ is the kernel's; scripts/check-style.sh runs all
three.

Usage: check-source.py FILE...   prints one TAP line per file, exits 1 on
any finding.
"""
import re
import sys

MAX_COLUMNS = 80
CONTROL = re.compile(r'^\s*(?:\}\s*)?(?:else\s+)?(if|for|while|switch)\s*\(')
ELSE = re.compile(r'^\s*\}?\s*else\b(?!\s+if\b)')


def strip_literals(line):
    """The line without string and character literals or comments."""
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(?:\\.|[^'\\])*'", "''", line)
    line = re.sub(r'/\*.*?\*/', '', line)
    return re.sub(r'//.*', '', line)


def check(path):
    findings = []
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    first = next((l for l in lines if l.strip()), '')
    if not first.startswith('/*'):
        findings.append((1, 'the file does not open with a comment'))
    if not any('SPDX-License-Identifier' in l for l in lines[:40]):
        findings.append((1, 'no SPDX-License-Identifier near the top'))
    in_comment = False
    pending = None          # (line number, depth) of an unclosed condition
    for n, raw in enumerate(lines, 1):
        if '\t' in raw:
            findings.append((n, 'tab'))
        if raw != raw.rstrip():
            findings.append((n, 'trailing white space'))
        if len(raw) > MAX_COLUMNS:
            findings.append((n, '%d columns' % len(raw)))
        code = raw
        if in_comment:
            if '*/' not in code:
                continue
            code = code.split('*/', 1)[1]
            in_comment = False
        code = strip_literals(code)
        if '/*' in code:
            code = code.split('/*', 1)[0]
            in_comment = True
        # Macro bodies count too, without their continuation marks.
        stripped = code.strip().rstrip('\\').rstrip()
        if not stripped or stripped.startswith('#'):
            continue
        if pending is not None:
            start, depth = pending
            depth += code.count('(') - code.count(')')
            if depth > 0:
                pending = (start, depth)
                continue
            pending = None
            if not stripped.endswith('{'):
                findings.append((start, 'a condition without braces'))
            continue
        m = CONTROL.match(code)
        if m:
            depth = code.count('(') - code.count(')')
            if depth > 0:
                pending = (n, depth)
                continue
            # "} while (x);" ends a do block (in a macro without its ";").
            if m.group(1) == 'while' and stripped.startswith('}'):
                continue
            if not stripped.endswith('{'):
                findings.append((n, 'a condition without braces'))
            continue
        if ELSE.match(code) and not stripped.endswith('{'):
            findings.append((n, 'else without braces'))
        elif stripped == 'do':
            findings.append((n, 'do without braces'))
    return findings


def main(argv):
    status = 0
    for path in argv[1:]:
        findings = check(path)
        if findings:
            status = 1
            print('not ok %s' % path)
            for n, what in findings[:20]:
                print('    %s:%d: %s' % (path, n, what))
        else:
            print('ok %s' % path)
    return status


if __name__ == '__main__':
    sys.exit(main(sys.argv))
