# Everything installs itself on a fresh Debian 12 machine (run as root).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := etcd-server etcd-client nftables python3-nftables bird2 exabgp iperf3 iproute2 iputils-ping \
                openssl procps python3-venv python3-yaml systemd podman mmdebstrap \
                containernetworking-plugins runc busybox-static iptables gcc libc6-dev chromium containerd
STAMP := $(VENV)/.calyx-installed

.PHONY: setup test lint unit integration demo demo-down bench clean manifests image cni-client

setup: $(STAMP) cni-client

$(STAMP): pyproject.toml Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# libnftables' Python bindings exist only as Debian's package: the venv sees system site-packages.
	[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint]'
	touch $(STAMP)

# The host's calyx-cni and calyx-ipam: one static C client of calyx-cni-server (no Python on the node).
CNI_CLIENT := build/cni-client
cni-client: $(CNI_CLIENT)/calyx-cni $(CNI_CLIENT)/calyx-ipam

$(CNI_CLIENT)/calyx-cni: felix/cni/client/calyx-cni.c
	@mkdir -p $(CNI_CLIENT)
	gcc -O2 -Wall -Wextra -Werror -static -s -o $@ $<

$(CNI_CLIENT)/calyx-ipam: $(CNI_CLIENT)/calyx-cni
	cp $< $@

# The node image is built first (under a minute): tests/integration/test_node_image.py checks it.
test: setup lint image
	$(PY) -m pytest -q

# The gate every change passes: ruff's checks and format, and mypy over the three packages.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest -q tests/unit

integration: setup
	$(PY) -m pytest -q tests/integration

demo: setup
	$(PY) -m tests.lab.demo $(if $(KEEP),--keep,)

demo-down: setup
	$(PY) -m tests.lab.demo --down

# Every benchmark in its own bounded process; prints each one's wall time and the total.
bench: setup
	$(PY) -m tests.bench.run_all

# calyx.yaml is generated from manifests/parts/ (a unit test checks the committed file is current).
manifests: setup
	$(PY) manifests/generate.py

# The node image, without a registry: a Debian 12 root filesystem from Debian's packages
# (mmdebstrap) with Calyx's wheel and the static CNI client, added to an empty image by podman.
IMAGE ?= localhost/calyx:0.1.0
image: setup cni-client
	PYTHON=$(abspath $(PY)) packaging/image/build-rootfs.sh build/image
	podman build -q -t $(IMAGE) -f build/image/Containerfile build/image
	@size=$$(podman image inspect $(IMAGE) --format '{{.Size}}'); echo "image $(IMAGE): $$size bytes ($$(numfmt --to=si $$size)B)"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info build
