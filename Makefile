# SPDX-License-Identifier: MIT
# Thin wrapper around CMake/CTest: `make`, `make check`, `make demo`, `make vmtest`,
# `make install PREFIX=...`.
BUILD ?= build
PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup check demo install clean bench vmtest

all:
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

setup:
	bash scripts/setup.sh

check: setup
	bash scripts/check.sh

demo: setup all
	bash scripts/demo.sh

# Three QEMU guests (software emulation, about a minute; installs QEMU and fetches a kernel).
vmtest: all
	NSK_BUILD=$(BUILD) bash scripts/vmtest.sh

bench: all
	$(BUILD)/nearsock bench

install: all
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
