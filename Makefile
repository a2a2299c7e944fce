# ferry: `make demo` runs the main job end to end; `make test` runs the whole suite.
CARGO ?= cargo
FERRY := target/release/ferry

.PHONY: all build deps test check demo bench fixtures clean

all: build

build:
	$(CARGO) build --release

## deps: install (apt-get) the real components the tests use, when missing
deps:
	bash scripts/install-deps.sh

## test: the whole suite, against real skopeo and umoci
test: deps
	$(CARGO) test --all-targets

## check: formatting, lints with warnings denied, then the suite
check: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets

## demo: build a sample bundle layout, archive it, verify and inspect it, read it with skopeo
demo: deps build
	bash scripts/demo.sh

## bench: ferry verify beside openssl and sha256sum on a generated ~1 GiB archive, the registry
## client beside curl on a 256 MiB blob, and export/import of a 1 GiB bundle set beside their
## network, disk and upload floors (local docker-registries on 127.0.0.1)
bench: deps build
	bash scripts/bench.sh

## fixtures: regenerate the committed fixtures (layouts and the tampered-archive corpus)
fixtures: build
	bash scripts/fixtures.sh

clean:
	$(CARGO) clean
