# prefixd-fastnetmon — every step a fresh Debian machine needs is here.
#   make demo   install what is missing, build the static binary, run a ban and an unban
#               against the loopback prefixd stand-in, show what prefixd received
#   make test   install what is missing, lint, unit + integration tests (debug and static binary)

SHELL      := /bin/bash
TARGET     := x86_64-unknown-linux-musl
STATIC     := target/$(TARGET)/release/prefixd-fastnetmon
STUB       := target/release/examples/prefixd-stub
CARGO      ?= cargo

.PHONY: all deps static stub demo test lint clean dist dist-deps cross-test fuzz fuzz-deps install deb e2e bench check-units

all: static

# The musl target (rustup) and musl-gcc (ring's C code for the musl target).
deps:
	@rustup target list --installed | grep -qx '$(TARGET)' || rustup target add $(TARGET)
	@command -v musl-gcc >/dev/null || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools) >/dev/null; }
	@command -v file >/dev/null || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq file) >/dev/null; }
	@command -v script >/dev/null || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bsdutils) >/dev/null; }

static: deps
	$(CARGO) build --release --locked --target $(TARGET)
	@file $(STATIC) | grep -q 'statically linked' || { file $(STATIC); echo 'not a static binary' >&2; exit 1; }
	@ls -l $(STATIC) | awk '{print $$5 " bytes  $(STATIC)"}'

stub:
	$(CARGO) build --release --locked --example prefixd-stub

demo: static stub
	@bash tests/demo.sh $(STATIC) $(STUB)

# The real FastNetMon drives the static binary (tests/e2e.rs), in both generations: 1.2.4
# (Debian bookworm's package, on the host) and 1.2.9 (Debian 13's, from a trixie chroot built
# once under target/ and reused). One at a time: FastNetMon's API listens on a fixed port.
TRIXIE_ROOT := target/e2e/trixie
e2e: static
	@test -x /usr/sbin/fastnetmon || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fastnetmon) >/dev/null; }
	@bash tests/e2e/trixie-root.sh $(TRIXIE_ROOT)
	PFN_BIN=$(CURDIR)/$(STATIC) PFN_TRIXIE_ROOT=$(CURDIR)/$(TRIXIE_ROOT) \
	  $(CARGO) test --locked --test e2e -- --ignored --nocapture --test-threads=1

# Speed, memory and size next to curl and a bash+curl+jq script (bench/), in one run.
BENCH_RUNS ?= 30
bench: static
	@for t in curl jq; do command -v $$t >/dev/null || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$t) >/dev/null; }; done
	@test -x /usr/bin/time || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time) >/dev/null; }
	$(CARGO) build -q --release --locked --example bench
	target/release/examples/bench $(CURDIR)/$(STATIC) $(BENCH_RUNS)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# The integration tests run twice: against the debug build, and against the static release
# binary that operators copy (PFN_BIN), so size tuning and musl cannot break what ships.
test: deps lint static check-units
	@command -v promtool >/dev/null || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null; }
	$(CARGO) test --locked
	$(CARGO) test --locked --test status_metrics -- --ignored
	PFN_BIN=$(CURDIR)/$(STATIC) $(CARGO) test --locked --test ban_unban

# The units: valid (systemd-analyze verify, with ExecStart at the freshly built binary) and
# sandboxed (exposure 3.0 at most). Offline: no running systemd is needed.
check-units: static
	@command -v systemd-analyze >/dev/null || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd) >/dev/null; }
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	  sed 's|/usr/local/bin/prefixd-fastnetmon|$(CURDIR)/$(STATIC)|' contrib/systemd/prefixd-fastnetmon-flush.service > $$tmp/prefixd-fastnetmon-flush.service; \
	  sed 's|/usr/local/lib/prefixd-fastnetmon/own-files|$(CURDIR)/contrib/own-files|' contrib/systemd/prefixd-fastnetmon-owner.service > $$tmp/prefixd-fastnetmon-owner.service; \
	  cp contrib/systemd/prefixd-fastnetmon-flush.timer contrib/systemd/prefixd-fastnetmon-owner.path $$tmp/; \
	  systemd-analyze verify --man=no $$tmp/prefixd-fastnetmon-flush.service $$tmp/prefixd-fastnetmon-flush.timer \
	    $$tmp/prefixd-fastnetmon-owner.service $$tmp/prefixd-fastnetmon-owner.path; \
	  systemd-analyze security --offline=true --threshold=30 $$tmp/prefixd-fastnetmon-flush.service | tail -1

clean:
	$(CARGO) clean
	rm -rf dist

# ---- appliances: static musl binaries for six architectures (Zig links; see README) ----
# arch:target pairs; DIST_ARCHS picks some (CI builds aarch64 and mips).
DIST_ALL   := x86_64:x86_64-unknown-linux-musl aarch64:aarch64-unknown-linux-musl \
              armv7:armv7-unknown-linux-musleabihf armv6:arm-unknown-linux-musleabi \
              mips:mips-unknown-linux-musl mipsel:mipsel-unknown-linux-musl
DIST_ARCHS ?= x86_64 aarch64 armv7 armv6 mips mipsel
ZIGVENV    := $(CURDIR)/.zigvenv
ZIGLANG    := 0.17.1
ZIGBUILD   := 0.24.1
# Its own target dir, so that `make static` (stable) and `make dist` (nightly) never overwrite
# each other's x86_64 binary. The machine's preinstalled nightly builds std for every target (-Z build-std), optimised for
# size: that is what brings x86_64 under 1.5 MiB (stable's prebuilt std: 1.84 MB).
NIGHTLY    ?= nightly
ZIG_ENV    := CARGO_ZIGBUILD_PYTHON_PATH=$(ZIGVENV)/bin/python3 \
              ZIG_GLOBAL_CACHE_DIR=$(CURDIR)/target/zig-cache CARGO_ZIGBUILD_CACHE_DIR=$(CURDIR)/target/zigbuild-cache \
              CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-self-contained=no -C force-unwind-tables=no -C target-feature=+crt-static -Z location-detail=none -Z fmt-debug=shallow -A linker-messages" \
              CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-self-contained=no -C force-unwind-tables=no -C target-feature=+crt-static -Z location-detail=none -Z fmt-debug=shallow -A linker-messages"

dist-deps:
	@test -x $(ZIGVENV)/bin/python3 || python3 -m venv $(ZIGVENV)
	@$(ZIGVENV)/bin/python3 -m ziglang version 2>/dev/null | grep -qx '$(ZIGLANG)' || $(ZIGVENV)/bin/pip install -q ziglang==$(ZIGLANG)
	@cargo-zigbuild --version 2>/dev/null | grep -q ' $(ZIGBUILD)$$' || $(CARGO) install -q cargo-zigbuild --version $(ZIGBUILD) --locked
	@rustup component list --toolchain $(NIGHTLY) --installed | grep -q '^rust-src' || rustup component add rust-src --toolchain $(NIGHTLY)

dist: dist-deps
	@mkdir -p dist
	@set -e; for pair in $(DIST_ALL); do arch=$${pair%%:*}; triple=$${pair#*:}; \
	  case " $(DIST_ARCHS) " in *" $$arch "*) ;; *) continue;; esac; \
	  start=$$(date +%s); \
	  $(ZIG_ENV) $(CARGO) +$(NIGHTLY) zigbuild -q --release --locked --target $$triple --target-dir target/dist \
	    -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size; \
	  cp target/dist/$$triple/release/prefixd-fastnetmon dist/prefixd-fastnetmon-$$arch; \
	  file dist/prefixd-fastnetmon-$$arch | grep -q 'statically linked' || { file dist/prefixd-fastnetmon-$$arch; exit 1; }; \
	  printf '%-8s %9s bytes  %4ss  %s\n' $$arch $$(stat -c %s dist/prefixd-fastnetmon-$$arch) $$(( $$(date +%s) - start )) $$triple; \
	done
	@cd dist && sha256sum prefixd-fastnetmon-* > SHA256SUMS

# Every non-x86 binary in dist/ under qemu-user against the loopback test server (tests/cross.rs);
# x86_64 natively.
cross-test:
	@command -v qemu-aarch64 >/dev/null || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user) >/dev/null; }
	@set -e; for pair in $(DIST_ALL); do arch=$${pair%%:*}; \
	  case " $(DIST_ARCHS) " in *" $$arch "*) ;; *) continue;; esac; \
	  case $$arch in x86_64) runner=;; aarch64) runner=qemu-aarch64;; armv7) runner=qemu-arm;; \
	    armv6) runner="qemu-arm -cpu arm1176";; mips) runner=qemu-mips;; mipsel) runner=qemu-mipsel;; esac; \
	  echo "== $$arch $${runner:-(native)}"; \
	  PFN_RUNNER="$$runner" PFN_BIN=$(CURDIR)/dist/prefixd-fastnetmon-$$arch $(CARGO) test -q --locked --test cross -- --nocapture 2>&1 | grep -E '^prefixd-fastnetmon |test result|panicked|assert'; \
	  test $${PIPESTATUS[0]} -eq 0; \
	done

# ---- fuzzing (cargo-fuzz, nightly): FUZZ_SECONDS per target. A crash input goes into
# tests/fuzz/regressions/<target>/, which `cargo test` replays (tests/fuzz_inputs.rs). ----
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := envfile details replies
fuzz-deps:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install -q cargo-fuzz --locked

fuzz: fuzz-deps
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p tests/fuzz/corpus/$$t; cp -n tests/fuzz/seeds/$$t/* tests/fuzz/corpus/$$t/ 2>/dev/null || true; \
	  $(CARGO) +$(NIGHTLY) fuzz run --fuzz-dir tests/fuzz $$t tests/fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 2>&1 | grep -E 'stat::number_of_executed_units|Done|ERROR|panicked|SUMMARY' ; \
	  test $${PIPESTATUS[0]} -eq 0; \
	done

# ---- install (PREFIX, DESTDIR; BIN = the binary to install) ----
PREFIX  ?= /usr/local
DESTDIR ?=
BIN     ?= $(STATIC)
UNITDIR ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,/etc/systemd/system)

install:
	@test -x $(BIN) || $(MAKE) static
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/prefixd-fastnetmon
	install -d -m 0755 $(DESTDIR)$(PREFIX)/lib/prefixd-fastnetmon
	sed 's|/usr/bin/prefixd-fastnetmon|$(PREFIX)/bin/prefixd-fastnetmon|' contrib/own-files > $(DESTDIR)$(PREFIX)/lib/prefixd-fastnetmon/own-files
	chmod 0755 $(DESTDIR)$(PREFIX)/lib/prefixd-fastnetmon/own-files
	install -D -m 0644 contrib/prefixd.env.example $(DESTDIR)$(PREFIX)/share/doc/prefixd-fastnetmon/prefixd.env.example
	@# The env file holds the token (own-files gives it to root and FastNetMon's group, 0640);
	@# an operator's own file is never overwritten.
	test -e $(DESTDIR)/etc/default/prefixd || install -D -m 0600 contrib/prefixd.env.example $(DESTDIR)/etc/default/prefixd
	install -D -m 0644 contrib/logrotate.d/prefixd-fastnetmon $(DESTDIR)/etc/logrotate.d/prefixd-fastnetmon
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	for u in flush.service owner.service; do \
	  sed -e 's|/usr/local/bin/|$(PREFIX)/bin/|' -e 's|/usr/local/lib/|$(PREFIX)/lib/|' contrib/systemd/prefixd-fastnetmon-$$u > $(DESTDIR)$(UNITDIR)/prefixd-fastnetmon-$$u; \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/prefixd-fastnetmon-$$u; done
	install -m 0644 contrib/systemd/prefixd-fastnetmon-flush.timer contrib/systemd/prefixd-fastnetmon-owner.path $(DESTDIR)$(UNITDIR)/
	@# On this host (no DESTDIR): FastNetMon's user gets the spool, the log and the env file
	@# (FASTNETMON_USER=… to say who; else its unit, else root). A staged install (the .deb)
	@# leaves that to the package's postinst.
	$(if $(DESTDIR),,$(PREFIX)/lib/prefixd-fastnetmon/own-files $(FASTNETMON_USER))

# ---- Debian packages with dpkg-deb alone: DEB_ARCHS from the binaries in dist/ ----
DEB_ARCHS   ?= amd64 arm64
DEBDIR      ?= dist
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb_bin      = $(if $(BIN_$(1)),$(BIN_$(1)),dist/prefixd-fastnetmon-$(if $(filter amd64,$(1)),x86_64,aarch64))

# lintian checks each package (errors and warnings fail); LINTIAN= skips it.
LINTIAN ?= lintian
deb:
	@test -x $(STATIC) || $(MAKE) static
	@set -e; for arch in $(DEB_ARCHS); do \
	  case $$arch in amd64) bin="$(call deb_bin,amd64)";; arm64) bin="$(call deb_bin,arm64)";; *) echo "no such arch $$arch" >&2; exit 1;; esac; \
	  test -x "$$bin" || $(MAKE) dist DIST_ARCHS="$$( [ $$arch = amd64 ] && echo x86_64 || echo aarch64 )"; \
	  stage=$$(mktemp -d); \
	  $(MAKE) -s install DESTDIR=$$stage PREFIX=/usr BIN=$$bin >/dev/null; \
	  rm -f $$stage/etc/default/prefixd; install -m 0600 contrib/prefixd.env.example $$stage/etc/default/prefixd; \
	  doc=$$stage/usr/share/doc/prefixd-fastnetmon; \
	  gzip -9n < contrib/debian/changelog > $$doc/changelog.gz; chmod 0644 $$doc/changelog.gz; \
	  install -m 0644 contrib/debian/copyright $$doc/copyright; \
	  install -d -m 0755 $$stage/usr/share/man/man8 $$stage/usr/share/lintian/overrides; \
	  bash contrib/debian/manpage.sh $(STATIC) README.md | gzip -9n > $$stage/usr/share/man/man8/prefixd-fastnetmon.8.gz; \
	  chmod 0644 $$stage/usr/share/man/man8/prefixd-fastnetmon.8.gz; \
	  install -m 0644 contrib/debian/lintian-overrides $$stage/usr/share/lintian/overrides/prefixd-fastnetmon; \
	  chmod 0755 $$stage; install -d $$stage/DEBIAN; \
	  sed -e 's/@VERSION@/$(VERSION)/' -e "s/@ARCH@/$$arch/" -e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $$stage | cut -f1)/" contrib/debian/control.in > $$stage/DEBIAN/control; \
	  install -m 0644 contrib/debian/conffiles $$stage/DEBIAN/conffiles; \
	  for s in postinst prerm postrm; do install -m 0755 contrib/debian/$$s $$stage/DEBIAN/$$s; done; \
	  install -m 0644 contrib/debian/triggers $$stage/DEBIAN/triggers; \
	  (cd $$stage && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums); \
	  mkdir -p $(DEBDIR); dpkg-deb --root-owner-group -Zxz --build $$stage $(DEBDIR)/prefixd-fastnetmon_$(VERSION)_$$arch.deb >/dev/null; \
	  rm -rf $$stage; echo "$(DEBDIR)/prefixd-fastnetmon_$(VERSION)_$$arch.deb"; \
	  if [ -z "$(LINTIAN)" ]; then echo "lintian skipped (LINTIAN is empty)" >&2; \
	  elif command -v $(LINTIAN) >/dev/null; then \
	    $(LINTIAN) --fail-on error,warning --display-info $(DEBDIR)/prefixd-fastnetmon_$(VERSION)_$$arch.deb >&2; \
	    echo "lintian: no error, no warning" >&2; \
	  else echo "lintian not installed: package not checked (CI installs it)" >&2; fi; \
	done
