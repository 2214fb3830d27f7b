# Incremental build of dstor. `make` is run by scripts/setup.sh; every target
# is skipped when its inputs did not change, so a no-op build is instant.
# Node 24 comes from node_modules/.bin (put first on PATH by npm and setup.sh).
SHELL := bash
.DEFAULT_GOAL := all

TS_SOURCES := $(shell find src test scripts -name '*.ts' -not -path 'src/chain/generated/*')
NATIVE_SOURCES := $(wildcard native-bindings/*.c native-bindings/*.h native-bindings/binding.gyp native-bindings/build.sh)
CONTRACT_SOURCES := $(wildcard contracts/*.sol scripts/compile-contracts.mjs)
NATIVE_ADDON := native-bindings/build/Release/dstor_native.node
FUSE_SOURCES := $(wildcard native-bindings/fuse/*.c native-bindings/fuse/*.h native-bindings/fuse/binding.gyp native-bindings/fuse/build.sh)
FUSE_ADDON := native-bindings/fuse/build/Release/fuse_native_dstor.node
CONTRACTS_TS := src/chain/generated/contracts.ts
STAMPS := .stamps

all: $(STAMPS)/native $(STAMPS)/fuse $(STAMPS)/wasm $(STAMPS)/tsc

$(STAMPS):
	@mkdir -p $@

# The native addon is optional at run time: when it cannot be built, the
# WebAssembly kernels are used and a warning says so.
$(STAMPS)/native: $(NATIVE_SOURCES) | $(STAMPS)
	@if [ -f native-bindings/build.sh ]; then \
	  echo "dstor build: native addon" >&2; \
	  bash native-bindings/build.sh >$(STAMPS)/native.log 2>&1 \
	    || { echo "dstor build: WARNING: the native addon did not build (see $(STAMPS)/native.log); falling back to WebAssembly kernels" >&2; rm -f $(NATIVE_ADDON); }; \
	fi
	@touch $@

# fuse-native's addon with dstor's utimens fix (native-bindings/fuse/README.md);
# without it the stock prebuild is used and mtimes cannot be set on the drive.
$(STAMPS)/fuse: $(FUSE_SOURCES) | $(STAMPS)
	@if [ -f native-bindings/fuse/build.sh ]; then \
	  echo "dstor build: fuse addon" >&2; \
	  bash native-bindings/fuse/build.sh >$(STAMPS)/fuse.log 2>&1 \
	    || { echo "dstor build: WARNING: the fuse addon did not build (see $(STAMPS)/fuse.log); the drive cannot set modification times" >&2; rm -f $(FUSE_ADDON); }; \
	fi
	@touch $@

$(STAMPS)/wasm: $(wildcard src/erasure/wasm/*.wat) $(wildcard scripts/build-wasm.mjs) | $(STAMPS)
	@if [ -f scripts/build-wasm.mjs ]; then echo "dstor build: wasm kernels" >&2; node scripts/build-wasm.mjs; fi
	@touch $@

$(CONTRACTS_TS): $(CONTRACT_SOURCES)
	@if [ -f scripts/compile-contracts.mjs ]; then echo "dstor build: contracts" >&2; node scripts/compile-contracts.mjs; fi
	@[ -f $@ ] || { mkdir -p $(dir $@); echo 'export {};' > $@; }

$(STAMPS)/tsc: $(TS_SOURCES) $(CONTRACTS_TS) tsconfig.json package.json | $(STAMPS)
	@echo "dstor build: typescript" >&2
	@rm -rf dist
	@tsc -p tsconfig.json
	@touch $@

clean:
	rm -rf dist build native-bindings/build native-bindings/fuse/build $(STAMPS) src/chain/generated

.PHONY: all clean
