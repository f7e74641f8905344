# prefixd-fastnetmon — every step a fresh Debian machine needs is here.
#   make demo   install what is missing, build the static binary, run a ban and an unban
#               against the loopback prefixd stand-in, show what prefixd received
#   make test   install what is missing, lint, unit + integration tests (debug and static binary)

SHELL      := /bin/bash
TARGET     := x86_64-unknown-linux-musl
STATIC     := target/$(TARGET)/release/prefixd-fastnetmon
STUB       := target/release/examples/prefixd-stub
CARGO      ?= cargo

.PHONY: all deps static stub demo test lint clean

all: static

# The musl target (rustup) and musl-gcc (ring's C code for the musl target).
deps:
	@rustup target list --installed | grep -qx '$(TARGET)' || rustup target add $(TARGET)
	@command -v musl-gcc >/dev/null || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools) >/dev/null; }
	@command -v file >/dev/null || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq file) >/dev/null; }

static: deps
	$(CARGO) build --release --locked --target $(TARGET)
	@file $(STATIC) | grep -Eq 'static(ally|-pie) linked' || { file $(STATIC); echo 'not a static binary' >&2; exit 1; }
	@ls -l $(STATIC) | awk '{print $$5 " bytes  $(STATIC)"}'

stub:
	$(CARGO) build --release --locked --example prefixd-stub

demo: static stub
	@bash tests/demo.sh $(STATIC) $(STUB)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# The integration tests run twice: against the debug build, and against the static release
# binary that operators copy (PFN_BIN), so size tuning and musl cannot break what ships.
test: deps lint static
	$(CARGO) test --locked
	PFN_BIN=$(CURDIR)/$(STATIC) $(CARGO) test --locked --test ban_unban

clean:
	$(CARGO) clean
