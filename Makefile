# eventpipe — everything a user runs. `make run` brings the pipeline up, `make test` runs the whole suite;
# both set up what they need themselves (.venv, Kafka from Maven Central, ClickHouse from Debian's packages).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: run stop status test unit bench soak lock clean help cluster-up cluster-down test-cluster

help:
	@echo "make run     set up and start Kafka, ClickHouse, the gateway, the consumers and Prometheus"
	@echo "make stop    stop everything eventpipe started"
	@echo "make status  show what runs"
	@echo "make test    run the whole test suite against real Kafka and ClickHouse"
	@echo "make unit    run only the unit tests (no servers)"
	@echo "make bench   run the benchmark and print its table"
	@echo "make soak    send 100 000 mixed valid, invalid and hostile requests through the pipeline and report"
	@echo "make cluster-up     start a local cluster: 3 Kafka brokers, ZooKeeper, 2 shards x 2 replicas of ClickHouse,"
	@echo "                    the gateway (port 19080) and the workers pointed at it"
	@echo "make cluster-down   stop the local cluster"
	@echo "make test-cluster   the cluster's fault tests (servers started and stopped by the run)"

.venv/.installed: requirements.lock pyproject.toml deploy/bootstrap-venv.sh
	@deploy/bootstrap-venv.sh

run: .venv/.installed
	@$(PY) -m deploy up

stop:
	@if [ -x $(PY) ]; then $(PY) -m deploy down; else echo "[eventpipe] nothing to stop (no .venv)"; fi

status: .venv/.installed
	@$(PY) -m deploy status

test: .venv/.installed
	@$(PY) -m deploy test -- $(PYTEST_ARGS)

unit: .venv/.installed
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

cluster-up: .venv/.installed
	@$(PY) -m deploy cluster-up

cluster-down:
	@if [ -x $(PY) ]; then $(PY) -m deploy cluster-down; else echo "[eventpipe] nothing to stop (no .venv)"; fi

test-cluster: .venv/.installed
	@$(PY) -m deploy cluster-test -- $(PYTEST_ARGS)

bench: .venv/.installed
	@$(PY) -m bench

soak: .venv/.installed
	@$(PY) -m bench --only soak --output bench/results/soak.json

# Re-pin every dependency (run after editing pyproject.toml; commit the result).
lock:
	rm -rf .lockvenv && python3 -m venv .lockvenv && .lockvenv/bin/pip install -q --upgrade pip && \
	.lockvenv/bin/pip install -q -e '.[dev]' && \
	.lockvenv/bin/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock && rm -rf .lockvenv

clean: stop cluster-down
	rm -rf .local .venv
