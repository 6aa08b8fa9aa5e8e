#!/usr/bin/env bash
# The Countersign demo: the reference gateway, the desktop app already paired to it, and a
# trickle of realistic approval requests, with no set-up.
#
#   1. `countersign-gateway serve` starts on a free loopback port; three requester tokens are
#      created and alice@example.com is invited
#   2. the desktop app starts in development mode (software passkey, clearly labelled) and
#      pairs itself with the invitation
#   3. every DEMO_INTERVAL seconds (default 20) a requester asks for something risky: a deploy,
#      a SQL statement, a shell in a pod... Each one arrives at once as a native notification
#      and in the app's inbox; approve or deny it there. When a request needs number matching
#      the code the requester sees is printed here.
#
# Stop it with Ctrl-C, or quit Countersign (tray menu, Quit; closing the window leaves it
# running in the tray, as the background agent). Everything lives in ./.demo
# (recreated each run, kept afterwards). With no screen (neither DISPLAY nor WAYLAND_DISPLAY
# set, e.g. over SSH) the app runs on a virtual display for DEMO_SECONDS (default 120) and a
# screenshot is saved after each request in .demo/screenshots.
#
# Needs the binaries built (`make demo` builds them first): target/debug/countersign-gateway,
# target/debug/countersign-desktop and target/debug/countersign-agent (the window starts it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="${COUNTERSIGN_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/debug}"
demo="$root/.demo"
interval="${DEMO_INTERVAL:-20}"

if [[ -t 1 ]]; then
    bold=$'\e[1m' dim=$'\e[2m' green=$'\e[32m' yellow=$'\e[33m' red=$'\e[31m' reset=$'\e[0m'
else
    bold='' dim='' green='' yellow='' red='' reset=''
fi
say() { printf '%s\n' "$*"; }
ok() { printf '%s✔ %s%s\n' "$green" "$*" "$reset"; }
note() { printf '%s%s%s\n' "$yellow" "$*" "$reset"; }
fail() {
    printf '%s✘ %s%s\n' "$red" "$*" "$reset" >&2
    printf 'logs are in %s\n' "$demo" >&2
    exit 1
}

for b in countersign-gateway countersign-desktop countersign-agent; do
    [[ -x "$bin/$b" ]] || fail "$bin/$b is missing: run \`make demo\` (it builds everything first)"
done

# ---- no screen: the same demo on a virtual display, with a private session bus ---------------
headless=0
if [[ -z "${DISPLAY:-}" && -z "${WAYLAND_DISPLAY:-}" ]]; then
    if [[ "${DEMO_INNER:-}" != 1 ]]; then
        command -v xvfb-run >/dev/null || fail "no screen and no xvfb-run (apt install xvfb)"
        note "No screen here (DISPLAY is not set): running the app on a virtual display for ${DEMO_SECONDS:-120} s;"
        note "screenshots go to .demo/screenshots."
        export DEMO_INNER=1
        exec xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- bash "$0" "$@"
    fi
fi
[[ "${DEMO_INNER:-}" == 1 ]] && headless=1

# ---- state and clean-up ----------------------------------------------------------------------
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$demo"
mkdir -p "$demo/gateway" "$demo/approver" "$demo/screenshots"
gw() { "$bin/countersign-gateway" --data-dir "$demo/gateway" "$@"; }

printf '%s== Countersign demo%s\n' "$bold" "$reset"

# ---- 1. the gateway --------------------------------------------------------------------------
# The binary itself in the background (not the `gw` function, whose subshell would be what
# `$!` names and what clean-up kills).
"$bin/countersign-gateway" --data-dir "$demo/gateway" serve --listen 127.0.0.1:0 \
    >"$demo/gateway.out" 2>"$demo/gateway.log" &
pids+=($!)
for _ in $(seq 100); do [[ -s "$demo/gateway/serving-url" ]] && break; sleep 0.1; done
[[ -s "$demo/gateway/serving-url" ]] || fail "the gateway did not start (see .demo/gateway.log)"
url="$(tr -d '[:space:]' <"$demo/gateway/serving-url")"
declare -A tokens
for who in deploy-bot ci-pipeline maria.dba; do
    tokens[$who]="$(gw token create "$who")"
done
link="$(gw invite alice@example.com)"
ok "gateway serving at $url; requesters deploy-bot, ci-pipeline and maria.dba have tokens"

# ---- 2. the desktop app, paired in development mode -----------------------------------------
# The demo's device key goes in a file of .demo (recreated each run), not in your keyring.
COUNTERSIGN_DATA_DIR="$demo/approver" COUNTERSIGN_AUTHENTICATOR=soft COUNTERSIGN_PAIR_LINK="$link" \
    COUNTERSIGN_KEY_STORE=file \
    COUNTERSIGN_LOG="${COUNTERSIGN_LOG:-info}" \
    "$bin/countersign-desktop" >"$demo/desktop.out" 2>"$demo/desktop.log" &
app=$!
pids+=($app)
paired=0
for _ in $(seq 300); do
    if grep -q "development pairing done" "$demo/desktop.log" 2>/dev/null; then
        paired=1
        break
    fi
    if ! kill -0 "$app" 2>/dev/null; then
        # A second instance hands its arguments to the first and exits at once.
        fail "the app exited at start: is Countersign already running in this session? Quit it and run again (log: .demo/desktop.log)"
    fi
    sleep 0.1
done
((paired)) || fail "the app did not pair (see .demo/desktop.log)"
# The background agent (engine, stream, notifications, tray) the window started; it holds the
# data directory's lock and runs on when the window is closed.
agent="$(cat "$demo/approver/lock")"
pids+=($agent)
ok "the desktop app is paired as alice@example.com (development mode: software passkey)"

# ---- 3. a trickle of requests ----------------------------------------------------------------
# requester|action|resource|risk|match|summary|detail|reason
samples=(
    "deploy-bot|deploy|prod/api|high|no|Deploy api v2.14.0 to production|helm upgrade api charts/api --namespace prod --set image.tag=v2.14.0|Release train 2026-48: payment retries and the new audit export"
    "maria.dba|sql.exec|prod-db/billing|high|yes|Drop the legacy invoices_2019 table|DROP TABLE billing.invoices_2019;|Archived to cold storage last week (OPS-4411); frees 210 GB"
    "ci-pipeline|kubectl.exec|prod/payments-7f9c6d|high|no|Open a shell in a payments pod|kubectl -n prod exec -it payments-7f9c6d -- /bin/sh|Investigating stuck settlement batch INC-2291"
    "deploy-bot|terraform.apply|aws/prod-network|medium|no|Apply network plan: add a NAT gateway in eu-west-1c|terraform apply -target=module.vpc.aws_nat_gateway.c plan-8841.tfplan|Third AZ for the egress path (NET-310)"
    "maria.dba|sql.exec|prod-db/auth|high|no|Rotate the reporting role's password|ALTER ROLE reporting WITH PASSWORD '********';|Quarterly credential rotation"
    "ci-pipeline|deploy|prod/web|low|no|Roll out the marketing site copy change|kubectl -n prod set image deploy/web web=registry.example.com/web:8f3c2a1|Copy fix for the pricing page"
    "deploy-bot|feature-flag|prod/checkout|medium|no|Turn on new_checkout_flow for 10% of users|flagctl set new_checkout_flow --env prod --rollout 10|Gradual rollout after a clean week in staging"
)

shot=0
screenshot() {
    ((headless)) || return 0
    sleep 2
    shot=$((shot + 1))
    /usr/bin/import -window root "$demo/screenshots/$(printf '%02d' "$shot")-$1.png" 2>/dev/null || true
}

send() {
    local who action resource risk match summary detail reason args out
    IFS='|' read -r who action resource risk match summary detail reason <<<"$1"
    args=(--gateway "$url" --token "${tokens[$who]}" --action "$action" --resource "$resource"
        --risk "$risk" --summary "$summary" --detail "$detail" --reason "$reason"
        --approver alice@example.com --ttl 900)
    [[ "$match" == yes ]] && args+=(--require-match)
    if out="$("$bin/countersign-gateway" request "${args[@]}" 2>&1)"; then
        printf '%s%s%s %s asks: %s %s(%s on %s, %s risk)%s\n' "$bold" "$(date +%T)" "$reset" \
            "$who" "$summary" "$dim" "$action" "$resource" "$risk" "$reset"
        printf '%s\n' "$out" | grep -i "match" | sed 's/^/         /' || true
    else
        note "$(date +%T) the gateway refused a request: $out"
    fi
}

say ""
say "Requests now arrive every ${interval} s. Approve or deny them in the Countersign window."
say "Add your own:  ${dim}COUNTERSIGN_TOKEN=${tokens[deploy-bot]} $bin/countersign-gateway request --gateway $url --action deploy --resource prod/api --approver alice@example.com --wait -- echo deployed${reset}"
((headless)) || say "Stop with Ctrl-C or quit the app from its tray menu."
say ""

screenshot started
deadline=$((SECONDS + ${DEMO_SECONDS:-120}))
i=0
while kill -0 "$agent" 2>/dev/null; do
    send "${samples[$((i % ${#samples[@]}))]}"
    i=$((i + 1))
    screenshot "request-$i"
    # Wait for the next one, or for Countersign to quit.
    for _ in $(seq "$interval"); do
        kill -0 "$agent" 2>/dev/null || break
        if ((headless)) && ((SECONDS >= deadline)); then
            break 2
        fi
        sleep 1
    done
done
if ((headless)); then
    ok "done: $i requests sent; screenshots in .demo/screenshots"
else
    ok "the app quit; $i requests were sent"
fi
