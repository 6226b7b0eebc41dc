# callhook developer and CI entry points (`make help`).
#
# The database comes from scripts/pg-ensure, which starts (or, as root, installs) a
# local PostgreSQL; point CALLHOOK_PG_URL at another server (no database path).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Builds are cached outside the clone, so every checkout shares them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/callhook-target

# Extra arguments for the command behind `run` (serve flags) or `test` (test filters),
# e.g. make test ARGS='retry'
ARGS ?=

.PHONY: help run test lint sqlx-prepare sqlx-check

help:
	@echo 'make run           serve locally (dev tokens, database "callhook" from scripts/pg-ensure)'
	@echo 'make test          all tests against a local PostgreSQL (nextest when installed)'
	@echo 'make lint          rustfmt --check and clippy -D warnings'
	@echo 'make sqlx-prepare  regenerate .sqlx/ after changing a query or a migration'
	@echo 'make sqlx-check    fail when .sqlx/ is out of date'

# DATABASE_URL, the tokens, CALLHOOK_LISTEN and CALLHOOK_ALLOW_PRIVATE_DESTINATIONS
# are taken from the environment when set. Queries compile against .sqlx/ (as in CI):
# the dev database gets its schema only when `serve` starts.
run:
	@if [ -z "$${DATABASE_URL:-}" ]; then DATABASE_URL=$$(scripts/pg-ensure --createdb callhook); fi; \
	export DATABASE_URL; \
	export SQLX_OFFLINE="$${SQLX_OFFLINE:-true}"; \
	export CALLHOOK_ADMIN_TOKEN="$${CALLHOOK_ADMIN_TOKEN:-local-admin-token}"; \
	export CALLHOOK_INGEST_TOKEN="$${CALLHOOK_INGEST_TOKEN:-local-ingest-token}"; \
	export CALLHOOK_LISTEN="$${CALLHOOK_LISTEN:-127.0.0.1:8080}"; \
	export CALLHOOK_ALLOW_PRIVATE_DESTINATIONS="$${CALLHOOK_ALLOW_PRIVATE_DESTINATIONS:-true}"; \
	echo "callhook (dev): http://$$CALLHOOK_LISTEN"; \
	echo "console:      http://$$CALLHOOK_LISTEN/console (sign in with the admin token)"; \
	echo "admin token:  $$CALLHOOK_ADMIN_TOKEN"; \
	echo "ingest token: $$CALLHOOK_INGEST_TOKEN"; \
	echo "database:     $$(sed -E 's#^([a-z]+://[^:/@]*):[^@/]*@#\1:***@#' <<<"$$DATABASE_URL")"; \
	echo "private destinations allowed: $$CALLHOOK_ALLOW_PRIVATE_DESTINATIONS"; \
	echo "try: curl -H 'authorization: Bearer $$CALLHOOK_ADMIN_TOKEN' http://$$CALLHOOK_LISTEN/api/v1/scenarios"; \
	exec cargo run -- serve $(ARGS)

# sqlx::test makes a fresh database per test through DATABASE_URL (the `postgres`
# database of the server). Doc tests are not run.
test:
	@scripts/chromium-ensure >/dev/null || echo 'Chromium is not available: the console browser test will skip, saying so' >&2; \
	DATABASE_URL=$$(scripts/pg-ensure --db postgres); \
	export DATABASE_URL SQLX_OFFLINE=true; \
	if cargo nextest --version >/dev/null 2>&1; then \
		echo '+ cargo nextest run --workspace --all-targets --no-fail-fast $(ARGS)'; \
		cargo nextest run --workspace --all-targets --no-fail-fast $(ARGS); \
	else \
		echo 'cargo-nextest is not installed: using cargo test' >&2; \
		echo '+ cargo test --workspace --all-targets --no-fail-fast $(ARGS)'; \
		cargo test --workspace --all-targets --no-fail-fast $(ARGS); \
	fi

lint:
	cargo fmt --all -- --check
	SQLX_OFFLINE=true cargo clippy --workspace --all-targets -- -D warnings

sqlx-prepare:
	scripts/sqlx-prepare

sqlx-check:
	scripts/sqlx-prepare --check
