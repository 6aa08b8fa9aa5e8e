# The project's front door. On a fresh Debian 12 / Ubuntu machine each of these is one command:
#
#   make demo    build, then run the headless approval loop end to end (scripts/demo.sh)
#   make test    every check CI runs: formatting, clippy, the binaries, all Rust tests, and the
#                UI's type check, lint and tests
#   make bench   the benchmarks (release build)
#   make deps    install missing system packages and Rust (demo, test and bench run it first)
#
# `deps` installs only what is missing, so repeated runs stay fast.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# rustup installs into ~/.cargo/bin; a toolchain installed by `deps` must be found by the
# recipes that follow it in the same `make` run.
export PATH := $(HOME)/.cargo/bin:$(PATH)

CARGO ?= cargo

.PHONY: demo test ui-dist ui-test bench deps deps-lints

demo: deps
	bash scripts/demo.sh

# The end-to-end tests start the real binaries, so those are built before `cargo test`.
test: deps-lints ui-dist
	@echo "== $$(date +%T) cargo fmt --check"
	$(CARGO) fmt --all -- --check
	@echo "== $$(date +%T) cargo clippy"
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@echo "== $$(date +%T) cargo build --bins"
	$(CARGO) build --workspace --bins
	@echo "== $$(date +%T) cargo test"
	# A private session bus for the desktop-notification tests (crates/notifications).
	dbus-run-session -- $(CARGO) test --workspace
	@$(MAKE) --no-print-directory ui-test

# The desktop shell embeds ui/dist at compile time (tauri::generate_context!), so the UI is
# built before any cargo step that compiles src-tauri.
ui-dist:
	@echo "== $$(date +%T) ui: npm ci, npm run build (ui/dist for src-tauri)"; \
	cd ui; \
	if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then \
	    npm ci --no-audit --no-fund; \
	fi; \
	npm run --silent build

# The desktop UI (TypeScript): type check, lint and unit tests. `npm ci` runs only when
# package-lock.json changed since the last install.
ui-test:
	@if [[ ! -f ui/package.json ]]; then exit 0; fi; \
	echo "== $$(date +%T) ui: npm ci, typecheck, lint, test"; \
	cd ui; \
	if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then \
	    npm ci --no-audit --no-fund; \
	fi; \
	npm run --silent typecheck; \
	npm run --silent lint; \
	npm test

bench: deps
	$(CARGO) run --release -p countersign-bench -- all

deps:
	bash scripts/deps.sh

deps-lints:
	bash scripts/deps.sh --with-lints
