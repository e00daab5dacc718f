#!/usr/bin/env bash
# bash completion of the tools (man/vmaugment.bash-completion) through
# bash-completion itself: commands as the first word, long options, and
# file names where a tool has no commands.  TAP.
#
#   test-completion.sh COMPLETION OFFLINE ADMIN PACK KEYGEN
set -uo pipefail

completion=$(realpath "$1") offline=$(realpath "$2") admin=$(realpath "$3")
pack=$(realpath "$4") keygen=$(realpath "$5")
n=0
failed=0

# complete WORD... : what bash-completion offers for the last WORD.
complete_words() {
    bash -c '
        source /usr/share/bash-completion/bash_completion
        source "$1"
        shift
        COMP_WORDS=("$@")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMP_LINE="${COMP_WORDS[*]}"
        COMP_POINT=${#COMP_LINE}
        _vmaugment "$1" "${COMP_WORDS[COMP_CWORD]}" \
            "${COMP_WORDS[COMP_CWORD - 1]}" 2>/dev/null
        printf "%s\n" "${COMPREPLY[@]}"' _ "$completion" "$@"
}

check() {
    local what=$1 want=$2
    shift 2
    local got
    got=$(complete_words "$@" | sort -u | tr '\n' ' ')
    n=$((n + 1))
    if [[ " $got" == *" $want "* ]]; then
        echo "ok $n - $what"
    else
        failed=1
        echo "not ok $n - $what"
        echo "# offered: $got"
    fi
}

[ -f /usr/share/bash-completion/bash_completion ] || {
    echo "1..0 # bash-completion is not installed"; exit 1; }
cd "$(mktemp -d)" && touch some-image.qcow2
check "vmaugment-offline: its commands" "inspect" "$offline" ""
check "vmaugment-offline: a command by its start" "bundle-build" "$offline" "bun"
check "vmaugment-offline: long options after a command" "--json" "$offline" "inspect" "--js"
check "vmaugment-offline: files after a command" "some-image.qcow2" "$offline" "inspect" "some"
check "vmaugment-admin: its commands" "trust" "$admin" "tr"
check "vmaugment-pack: the commands of its usage line" "create" "$pack" "cr"
check "vmaugment-pack: an option with a value" "--manifest=" "$pack" "create" "--man"
check "vmaugment-keygen: no commands, options" "--issuer-key=" "$keygen" "--iss"
echo "1..$n"
exit $failed
