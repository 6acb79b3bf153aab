# Thin wrapper over CMake. `make demo` and `make test` work on a fresh Debian
# machine: they install missing packages first (scripts/deps.sh).
BUILD ?= build
JOBS  ?= $(shell nproc)

.PHONY: all deps build test demo sanitize fuzz bench clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

test: build
	@cd $(BUILD) && ctest --output-on-failure -j 1

demo: build
	@bash scripts/demo.sh $(BUILD)/duet

# The test suite under ASan+UBSan (CI runs this too).
sanitize: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDUET_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ctest --output-on-failure -j 1

# libFuzzer targets under ASan+UBSan, FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DDUET_SANITIZE=ON -DDUET_FUZZ=ON -DDUET_TESTS=OFF >/dev/null
	@cmake --build build-fuzz -j $(JOBS)
	@bash scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) build-asan build-fuzz
