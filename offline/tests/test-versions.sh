#!/usr/bin/env bash
# Version comparison must agree with dpkg --compare-versions everywhere.
source "$(dirname "$0")/lib.sh"

plan 1

versions=(0 1.0 1.0-1 1:0 1:1.0-1 1.0~rc1 1.0~~ 1.0~ 1.0+b1 1.0a 1.00
          1.0-0 1.0-1~bpo12+1 1.0-1+deb12u1 2.36-9+deb12u9 2.36-9+deb12u10
          10 9 a 7.2+dfsg-7+deb12u18+b3 0.0~git20200101)
ops=(lt eq gt)
n=0
for a in "${versions[@]}"; do
    for b in "${versions[@]}"; do
        for op in "${ops[@]}"; do
            want=0; dpkg --compare-versions "$a" "$op" "$b" || want=1
            got=0; "$VMAUGMENT_OFFLINE" compare-versions "$a" "$op" "$b" || got=$?
            [ "$want" = "$got" ] || fail "$a $op $b: dpkg says $want, we say $got"
            n=$((n + 1))
        done
    done
done
expect_refusal "invalid version" compare-versions "1:" lt 1
expect_refusal "invalid version" compare-versions "1 2" lt 1
expect_refusal "unknown version operator" compare-versions 1 '~' 2
pass "$n comparisons agree with dpkg"
