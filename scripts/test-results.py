#!/usr/bin/env python3
"""Count what each test suite of vmaugment really ran, and judge the run.

scripts/test.sh runs the suites; this script turns their logs into rows
"KEY PASSED FAILED SKIPPED" and then checks the rows against the expected
counts in tests/expected-counts.  It exists because the runners disagree
on what a pass is: meson counts a TAP test with skipped subtests as one
pass, TAP puts "# SKIP" on an "ok" line, and a test left out of the build
simply vanishes.  Here a skip is never a pass, and a test that vanished
or ran fewer cases than recorded is a failure.

  test-results.py tap KEY LOG...        TAP lines of LOGs as one row
  test-results.py meson SUITE TESTLOG   one row per test of meson's
                                        testlog.json, keyed SUITE/NAME
  test-results.py scenarios KEY LOG     PASS/FAIL/SKIP lines (guest suite)
  test-results.py check EXPECTED ROWS [--no-skips] [--suites S,...]
                                        compare, print one line per suite,
                                        exit 1 on any failure, mismatch or
                                        (with --no-skips) skip; --suites
                                        limits the expectations to those
                                        suites

Only the standard library: it runs before anything is installed.
"""

import json
import re
import sys

TAP_LINE = re.compile(r'^(not )?ok\b(.*)$')
TAP_SKIP = re.compile(r'#\s*skip\b', re.IGNORECASE)
TAP_TODO = re.compile(r'#\s*todo\b', re.IGNORECASE)
TAP_PLAN = re.compile(r'^1\.\.(\d+)')


def tap_counts(text):
    """Count a TAP stream; a plan the stream falls short of is a failure."""
    passed = failed = skipped = 0
    plan = None
    for line in text.splitlines():
        m = TAP_PLAN.match(line)
        if m:
            # GLib's qtests print a growing plan per -p path: keep the last.
            plan = max(plan or 0, int(m.group(1)))
            continue
        m = TAP_LINE.match(line)
        if not m:
            continue
        if TAP_SKIP.search(m.group(2)):
            skipped += 1
        elif m.group(1) or TAP_TODO.search(m.group(2)):
            # A TODO is a known failure: it proves nothing either way.
            failed += 1
        else:
            passed += 1
    if plan is not None and passed + failed + skipped < plan:
        failed += plan - (passed + failed + skipped)
    return passed, failed, skipped


def cmd_tap(key, logs):
    text = ''
    for log in logs:
        with open(log, errors='replace') as f:
            text += f.read() + '\n'
    print(key, *tap_counts(text))


def cmd_meson(suite, testlog):
    with open(testlog) as f:
        for line in f:
            t = json.loads(line)
            # "vmaugment:host / store" -> "store"
            name = t['name'].split(' / ', 1)[-1]
            result = t['result']
            stdout = t.get('stdout') or ''
            if re.search(r'^(not )?ok\b', stdout, re.MULTILINE):
                passed, failed, skipped = tap_counts(stdout)
            else:
                passed = failed = skipped = 0
            if result == 'SKIP':
                skipped = max(skipped, 1)
            elif result != 'OK':
                failed = max(failed, 1)
            elif passed + failed + skipped == 0:
                passed = 1
            print('%s/%s' % (suite, name), passed, failed, skipped)


def cmd_scenarios(key, log):
    passed = failed = skipped = 0
    with open(log, errors='replace') as f:
        for line in f:
            word = line.split(' ', 1)[0]
            if word == 'PASS':
                passed += 1
            elif word == 'FAIL':
                failed += 1
            elif word == 'SKIP':
                skipped += 1
    print(key, passed, failed, skipped)


def read_expected(path):
    expected = {}
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].split()
            if line:
                expected[line[0]] = int(line[1])
    return expected


def cmd_check(expected_path, rows_path, no_skips, only):
    expected = read_expected(expected_path)
    if only:
        expected = {k: n for k, n in expected.items()
                    if k.split('/', 1)[0] in only}
    rows = {}
    with open(rows_path) as f:
        for line in f:
            key, p, fl, s = line.split()
            rows[key] = (int(p), int(fl), int(s))

    problems = []
    mismatches = 0      # problems that are not failed cases
    suites = {}
    for key, (p, fl, s) in rows.items():
        suite = key.split('/', 1)[0]
        tot = suites.setdefault(suite, [0, 0, 0, 0])
        tot[0] += p
        tot[1] += fl
        tot[2] += s
        if fl:
            problems.append('%s: %d failed' % (key, fl))
        if s and no_skips:
            problems.append('%s: %d skipped (no skips in CI)' % (key, s))
            mismatches += 1
        if key not in expected:
            problems.append('%s: ran %d, not in %s' % (key, p, expected_path))
            mismatches += 1
        elif not fl and p + s != expected[key]:
            # A failed test is reported above; its count says no more.
            # Skipped cases count here: outside CI a skip is shown, not
            # failed; under CI --no-skips fails it above.
            problems.append('%s: ran %d, expected %d' %
                            (key, p + s, expected[key]))
            mismatches += 1
    for key, n in expected.items():
        if key not in rows:
            problems.append('%s: did not run (expected %d)' % (key, n))
            suite = key.split('/', 1)[0]
            suites.setdefault(suite, [0, 0, 0, 0])[3] += n

    passed = failed = skipped = 0
    for suite, (p, fl, s, missing) in suites.items():
        print('%-8s %4d passed, %d failed, %d skipped%s' %
              (suite, p, fl, s,
               ', %d missing' % missing if missing else ''))
        passed += p
        failed += fl + missing
        skipped += s
    for problem in problems:
        print('  ' + problem)
    # A count mismatch or a skip under CI fails the run, counted as one
    # failure each, even when every test that ran passed.
    failed += mismatches
    print('%d passed, %d failed, %d skipped' % (passed, failed, skipped))
    return 1 if problems else 0


def main(argv):
    if len(argv) >= 3 and argv[1] == 'tap':
        cmd_tap(argv[2], argv[3:])
    elif len(argv) == 4 and argv[1] == 'meson':
        cmd_meson(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == 'scenarios':
        cmd_scenarios(argv[2], argv[3])
    elif len(argv) >= 4 and argv[1] == 'check':
        opts = argv[4:]
        only = None
        if '--suites' in opts:
            only = opts[opts.index('--suites') + 1].split(',')
        return cmd_check(argv[2], argv[3], '--no-skips' in opts, only)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
