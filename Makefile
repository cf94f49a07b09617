# The README's two commands: `make demo` and `make test`.
BUILD      ?= build
BUILD_SAN  ?= build-san
BUILD_FUZZ ?= build-fuzz
SHARED     ?= $(abspath ../shared)
JOBS       ?= $(shell nproc)
# Tests at a time: one more than cores. Most integration tests wait on
# clients, brokers and group joins, not on a CPU (docs/testing.md has the
# budget, the measurements and how to keep a test short). On 2 cores, in a
# clean clone, with other builds loading the machine (load 5-8): plain tests
# 308-334 s, ASan+UBSan tests 312-335 s, the whole `make test` 17m51s; with
# nproc at a time the test stages took about 500 s each before the cuts.
# test_package's failure at nproc+1 was SIGPIPE under pipefail (fixed in the
# test); test_proxy_quotas@2.12 failing once under ASan is open (docs/testing.md).
TEST_JOBS  ?= $(shell echo $$(( $(JOBS) + 1 )))
CMAKE_FLAGS ?=
ifdef CI
CMAKE_FLAGS += -DKWIRE_WERROR=ON
endif

# Seconds each fuzz target runs in `make test` (a smoke run; `make fuzz` is the long one).
FUZZ_SMOKE_SECS ?= 2

.PHONY: all deps build demo test test-unit test-sanitize test-fuzz-smoke regen fuzz bench clean format package

all: build

deps:
	@tools/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DKWIRE_SHARED=$(SHARED) $(CMAKE_FLAGS) >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/kwire demo

# ctest's result, then tools/check-skips.py: the skipped tests and why; in
# CI (CI set) a skip is a failure unless its prerequisite is optional.
CHECK_SKIPS = /usr/bin/python3 $(CURDIR)/tools/check-skips.py

test-unit: build
	cd $(BUILD) && { ctest --output-on-failure -j $(TEST_JOBS) --output-junit ctest.xml; rc=$$?; \
		$(CHECK_SKIPS) ctest.xml || rc=1; exit $$rc; }

test-sanitize: deps
	cmake -S . -B $(BUILD_SAN) -DKWIRE_SANITIZE=ON -DKWIRE_SHARED=$(SHARED) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD_SAN) -j $(JOBS)
	cd $(BUILD_SAN) && { ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(TEST_JOBS) --output-junit ctest.xml; rc=$$?; \
		$(CHECK_SKIPS) ctest.xml || rc=1; exit $$rc; }

# Every libFuzzer target runs briefly from its seeds when clang is present
# (tools/install-deps.sh installs it; in CI its absence is an error).
test-fuzz-smoke: deps
	@if ! command -v clang >/dev/null; then \
		if [ -n "$$CI" ]; then echo "clang missing: the fuzz smoke run cannot run" >&2; exit 1; fi; \
		echo "SKIP: fuzz smoke run (needs: clang)"; exit 0; \
	fi; \
	CC=clang cmake -S . -B $(BUILD_FUZZ) -DKWIRE_FUZZ=ON $(CMAKE_FLAGS) >/dev/null && \
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz_all && \
	KWIRE_FUZZ_WORK=$(abspath $(BUILD_FUZZ))/smoke-work tools/run-fuzz.sh $(BUILD_FUZZ)/fuzz $(FUZZ_SMOKE_SECS)

test: test-unit test-sanitize test-fuzz-smoke

regen:
	python3 tools/kwire-gen.py $(SHARED)/kafka-protocol decoder

fuzz: deps
	CC=clang cmake -S . -B $(BUILD_FUZZ) -DKWIRE_FUZZ=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz_all
	tools/run-fuzz.sh $(BUILD_FUZZ)/fuzz 60

# The Debian package (packaging/CMakeLists.txt, docs/packaging.md).
package: build
	cd $(BUILD) && cpack -G DEB

bench: build
	@for b in $(BUILD)/bench/bench_*; do echo "== $$b"; $$b; done

format:
	clang-format -i $$(git ls-files '*.c' '*.h' | grep -v -- '-gen\.')

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_FUZZ)
