# The project's front door. On a fresh Debian 12 / Ubuntu machine each of these is one command:
#
#   make demo      build, then run the product: the reference gateway, the desktop app paired to
#                  it (development mode) and a trickle of sample requests (scripts/demo.sh)
#   make test      every check CI runs: formatting, clippy, cargo deny, the binaries, all Rust
#                  tests, security keys over USB HID in an emulated guest (guest-test), the
#                  desktop app's build and its end-to-end test under Xvfb, the UI's
#                  type check, lint and tests, a short fuzzing run, and the .deb packaging
#                  (deb-check)
#   make demo-cli  the headless approval loop, narrated step by step (scripts/demo-cli.sh)
#   make deb       the .deb package of the desktop app (release build); `make test` builds it
#                  from the tests' debug build instead (deb-check), to check the packaging
#                  without a second build of everything
#   make bench     the benchmarks (release build); `make bench-desktop` the desktop app's
#   make fuzz      every fuzz target for FUZZ_SECONDS each (default 600); `make test` runs each
#                  for FUZZ_SMOKE_SECONDS (default 20)
#   make deps      install missing system packages and Rust (demo, test and bench run it first)
#
# `deps` installs only what is missing, so repeated runs stay fast.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# rustup installs into ~/.cargo/bin; a toolchain installed by `deps` must be found by the
# recipes that follow it in the same `make` run.
export PATH := $(HOME)/.cargo/bin:$(PATH)

CARGO ?= cargo
# The desktop shell (src-tauri) is its own Cargo workspace; it builds into the same target
# directory as the root workspace, where the end-to-end tests look for its binary.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
DESKTOP := --manifest-path src-tauri/Cargo.toml --target-dir $(TARGET_DIR)
XVFB := xvfb-run -a -s "-screen 0 1280x800x24"

.PHONY: demo demo-cli test desktop desktop-e2e deb ui-dist ui-test bench bench-desktop deps deps-lints fuzz fuzz-smoke deny deny-advisories

demo: deps ui-dist
	$(CARGO) build -p countersign-gateway -p countersign-approver -p countersign-agent --bins
	$(CARGO) build $(DESKTOP)
	COUNTERSIGN_BIN_DIR=$(TARGET_DIR)/debug bash scripts/demo.sh

demo-cli: deps
	bash scripts/demo-cli.sh

# The end-to-end tests start the real binaries, so those are built before `cargo test`.
test: deps-lints ui-dist
	@echo "== $$(date +%T) cargo fmt --check"
	$(CARGO) fmt --all -- --check
	@echo "== $$(date +%T) cargo clippy"
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@$(MAKE) --no-print-directory deny
	@echo "== $$(date +%T) cargo build --bins"
	$(CARGO) build --workspace --bins
	@echo "== $$(date +%T) cargo test"
	# A private session bus for the desktop-notification tests (crates/notifications), with a
	# throwaway Secret Service on it for the device-key store test.
	dbus-run-session -- bash scripts/with-secret-service.sh $(CARGO) test --workspace
	@$(MAKE) --no-print-directory postgres-test
	@$(MAKE) --no-print-directory guest-test
	@$(MAKE) --no-print-directory desktop-e2e
	@$(MAKE) --no-print-directory ui-test
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory deb-check

# The gateway's API suite again, on PostgreSQL: a real server the tests start as an
# unprivileged user (crates/test-support/src/postgres.rs), a database per test gateway. The
# test binary is the one `cargo test --workspace` built (`--workspace` keeps its features, so
# nothing is built again); only the store differs.
.PHONY: postgres-test
postgres-test:
	@echo "== $$(date +%T) the gateway's API suite on PostgreSQL"
	COUNTERSIGN_TEST_STORE=postgres $(CARGO) test --workspace --test api

# The real security key path (CTAP2 over USB HID) in a QEMU guest with a virtual FIDO2 key on
# /dev/uhid, on the binaries the build above made (tests/guest/run.sh says how).
.PHONY: guest-test
guest-test:
	@echo "== $$(date +%T) security keys over USB HID in an emulated guest (tests/guest)"
	bash tests/guest/run.sh

# Licences, duplicate versions and sources of both workspaces' dependency graphs (deny.toml).
# Advisories need the RustSec database from GitHub: `make deny-advisories` where it is reachable.
deny:
	@echo "== $$(date +%T) cargo deny: licences, bans, sources"
	$(CARGO) deny --log-level error --workspace --locked check licenses bans sources
	$(CARGO) deny --log-level error --manifest-path src-tauri/Cargo.toml --config deny.toml --locked check licenses bans sources

deny-advisories:
	$(CARGO) deny --workspace --locked check advisories
	$(CARGO) deny --manifest-path src-tauri/Cargo.toml --config deny.toml --locked check advisories

# The desktop shell: formatting, clippy, build and its own tests.
desktop: ui-dist
	@echo "== $$(date +%T) desktop (src-tauri): fmt, clippy, build, test"
	$(CARGO) fmt --manifest-path src-tauri/Cargo.toml -- --check
	$(CARGO) clippy $(DESKTOP) --all-targets -- -D warnings
	$(CARGO) build $(DESKTOP)
	dbus-run-session -- $(CARGO) test $(DESKTOP)

# The real app end to end through WebDriver (tauri-driver + WebKitWebDriver) on a virtual
# display and a private session bus; screenshots land in $(TARGET_DIR)/desktop-e2e.
desktop-e2e: desktop
	@echo "== $$(date +%T) desktop end to end (tests/tests/desktop)"
	$(XVFB) dbus-run-session -- $(CARGO) test -p countersign-e2e --test desktop -- --ignored --test-threads=1

# The .deb package (release build; the Tauri CLI comes from ui/node_modules). Its desktop entry
# registers countersign:// (x-scheme-handler), which `deb` checks.
# The package holds both programs: the window (the Tauri app the bundler builds) and the
# background agent beside it in /usr/bin, added to the bundle's files from the same profile.
deb_files = '{"bundle":{"linux":{"deb":{"files":{"/usr/bin/countersign-agent":"$(TARGET_DIR)/$(1)/countersign-agent"}}}}}'

deb: deps ui-dist
	@echo "== $$(date +%T) deb: tauri build --bundles deb"
	$(CARGO) build --release -p countersign-agent
	cd src-tauri && CARGO_TARGET_DIR=$(TARGET_DIR) ../ui/node_modules/.bin/tauri build --bundles deb --config $(call deb_files,release)
	@$(MAKE) --no-print-directory deb-verify DEB_DIR=$(TARGET_DIR)/release/bundle/deb

# What `make test` checks of the package: the same bundling from the debug build the tests
# already made (one build profile for the tests and the package, so CI compiles the desktop
# app and its dependencies once). The shipped package is `make deb`.
deb-check: deps ui-dist
	@echo "== $$(date +%T) deb-check: tauri build --debug --bundles deb"
	$(CARGO) build -p countersign-agent
	cd src-tauri && CARGO_TARGET_DIR=$(TARGET_DIR) ../ui/node_modules/.bin/tauri build --debug --bundles deb --config $(call deb_files,debug)
	@$(MAKE) --no-print-directory deb-verify DEB_DIR=$(TARGET_DIR)/debug/bundle/deb

.PHONY: deb-check deb-verify
deb-verify:
	@deb="$$(ls -t $(DEB_DIR)/*.deb | head -n1)"; \
	dpkg-deb --info "$$deb" >/dev/null; \
	dpkg-deb --fsys-tarfile "$$deb" | tar -xO --wildcards '*.desktop' | grep -q '^MimeType=.*x-scheme-handler/countersign;' \
	    || { echo "the .deb's desktop entry does not register countersign://"; exit 1; }; \
	contents="$$(dpkg-deb --contents "$$deb")"; \
	for p in countersign-desktop countersign-agent; do \
	    grep -Eq " (\./)?usr/bin/$$p$$" <<<"$$contents" || { echo "the .deb has no /usr/bin/$$p"; exit 1; }; \
	done; \
	echo "deb: $$deb ($$(du -h "$$deb" | cut -f1)), countersign:// registered, window and agent in /usr/bin"

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

# Fuzzing (fuzz/, cargo-fuzz with libFuzzer and AddressSanitizer). cargo-fuzz passes
# `-Zsanitizer=address`, an unstable flag; the stable toolchain ships the ASan runtime, and
# RUSTC_BOOTSTRAP=1 lets it accept the flag for this build only. Each run starts from the seed
# corpus in fuzz/corpus/<target> and writes what it finds to a temporary directory, so the
# committed corpus changes only by hand; a crash is saved under fuzz/artifacts/ and fails make.
FUZZ_TARGETS := decode sse deep_link audit_verify
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_SECONDS ?= 600

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz-run FUZZ_TIME=$(FUZZ_SMOKE_SECONDS)

fuzz: deps-lints
	@$(MAKE) --no-print-directory fuzz-run FUZZ_TIME=$(FUZZ_SECONDS)

.PHONY: fuzz-run
fuzz-run:
	@echo "== $$(date +%T) fuzz: $(FUZZ_TARGETS), $(FUZZ_TIME) s each"
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build -O
	@cd fuzz; for t in $(FUZZ_TARGETS); do \
	    work="$$(mktemp -d)"; status=0; \
	    RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O "$$t" "$$work" "corpus/$$t" -- \
	        -max_total_time=$(FUZZ_TIME) -rss_limit_mb=2048 -print_final_stats=1 \
	        > "$$work.log" 2>&1 || status=$$?; \
	    grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY)" \
	        "$$work.log" | sed "s/^/fuzz $$t: /" || true; \
	    if [[ $$status -ne 0 ]]; then \
	        tail -n 40 "$$work.log"; rm -rf "$$work" "$$work.log"; \
	        echo "fuzz $$t FAILED (the input is in fuzz/artifacts/$$t)"; exit 1; \
	    fi; \
	    rm -rf "$$work" "$$work.log"; \
	done

bench: deps
	$(CARGO) run --release -p countersign-bench -- all

# The desktop app's figures (docs/performance.md): the release app (what the .deb ships) on a
# virtual display and a private session bus, driven through tauri-driver.
bench-desktop: deb
	$(CARGO) build --release -p countersign-bench
	$(XVFB) dbus-run-session -- $(TARGET_DIR)/release/countersign-bench desktop

deps:
	bash scripts/deps.sh

deps-lints:
	bash scripts/deps.sh --with-lints
