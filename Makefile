# memberwise — `make help` lists the targets.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
PY := .venv/bin/python
DEMO_DATA ?= demo-data
DEMO_HOME ?= demo-home
DEMO_MEMBERS ?= 3000
DEMO_AS_OF ?= 2025-12-31
PORT ?= 8000

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install -q uv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --compile-bytecode  # compiled at install: the API and CLI start without compiling ~11k modules
	@touch $@

env: .venv/.synced ## create the environment from the lock file

demo: env ## generate a shop, build tags into Feast, train + register models, serve on :8000
	@if [ ! -f $(DEMO_DATA)/order_lines.parquet ]; then \
		.venv/bin/memberwise generate --out $(DEMO_DATA) --members $(DEMO_MEMBERS) --seed 7; fi
	.venv/bin/memberwise run --data $(DEMO_DATA) --as-of $(DEMO_AS_OF) --home $(DEMO_HOME)
	.venv/bin/memberwise score --home $(DEMO_HOME) --out $(DEMO_HOME)/scores.parquet
	@SF=$$(.venv/bin/memberwise keys create --scope storefront --label demo-storefront --home $(DEMO_HOME) 2>/dev/null) && \
	MK=$$(.venv/bin/memberwise keys create --scope marketing --label demo-console --home $(DEMO_HOME) 2>/dev/null) && \
	SF="$$SF" MK="$$MK" $(PY) -c "import os, pandas as pd; s=pd.read_parquet('$(DEMO_HOME)/scores.parquet'); m=s.sort_values('churn_risk').member_id.iloc[len(s)//2]; \
	p=s.products.explode().mode().iloc[0]; sf, mk = os.environ['SF'], os.environ['MK']; \
	print('\nAPI keys made for this demo (memberwise keys list / keys revoke ID):'); \
	print(f'  storefront: {sf}'); print(f'  marketing:  {mk}'); \
	print(f'\nConsole: http://127.0.0.1:$(PORT)/console  (sign in with the marketing key above)'); \
	print('\nTry, once the server below says it is ready:'); \
	print(f'  curl -s -H \"X-API-Key: {sf}\" \"http://127.0.0.1:$(PORT)/v1/members/{m}/recommendations?n=5\" | python3 -m json.tool'); \
	print(f'  curl -s -H \"X-API-Key: {sf}\" \"http://127.0.0.1:$(PORT)/v1/members/{m}/recommendations?n=5&category=books&exclude={p}\" | python3 -m json.tool'); \
	print(f'  curl -s -H \"X-API-Key: {sf}\" \"http://127.0.0.1:$(PORT)/v1/products/{p}/similar?n=5\" | python3 -m json.tool'); \
	print(f'  curl -s -H \"X-API-Key: {sf}\" \"http://127.0.0.1:$(PORT)/v1/members/someone-new/recommendations\" | python3 -m json.tool'); \
	print(f'  curl -s -H \"X-API-Key: {mk}\" \"http://127.0.0.1:$(PORT)/v1/segments/members?tag=dormant&value_tier=gold&limit=5\" | python3 -m json.tool'); \
	print('  open http://127.0.0.1:$(PORT)/docs ; MLflow UI: make mlflow-ui\n')"
	.venv/bin/memberwise serve --home $(DEMO_HOME) --port $(PORT)

test: env ## run the test suite (fast: unit, route and small end-to-end tests; service-backed tests skip when PostgreSQL/Redis are absent)
	.venv/bin/pytest -q -m "not slow"

test-slow: env ## the slow tests: whole pipelines on small shops, the Feast CLI, the public datasets
	.venv/bin/pytest -q -m slow

test-all: env ## every test
	.venv/bin/pytest -q

lint: env ## ruff lint + format check, mypy on models/ and serving/
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy models serving

format: env ## format the code
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

mlflow-ui: env ## MLflow UI for the demo home on :5000
	.venv/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(DEMO_HOME))/mlflow/mlflow.db --port 5000

feast-ui: env ## Feast UI for the demo home on :8888
	cd $(DEMO_HOME)/feast && ../../.venv/bin/feast ui --port 8888

SHARED ?= ../shared/data
EVAL_DIR ?= docs/evaluation

evaluate-synthetic: env ## backtest on a synthetic shop (20,000 members, seed 7) as of 2025-09-30
	.venv/bin/memberwise generate --out eval-data/synthetic --members 20000 --seed 7
	.venv/bin/memberwise evaluate --data eval-data/synthetic --as-of 2025-09-30 --out $(EVAL_DIR)/synthetic

evaluate-online-retail: env ## backtest on UCI Online Retail as of 2011-09-10
	.venv/bin/memberwise convert online-retail $(SHARED)/online_retail eval-data/online_retail
	.venv/bin/memberwise evaluate --data eval-data/online_retail --as-of 2011-09-10 --out $(EVAL_DIR)/online_retail

evaluate-completejourney: env ## backtest on The Complete Journey as of 2017-09-30
	.venv/bin/memberwise convert complete-journey $(SHARED)/completejourney eval-data/completejourney
	.venv/bin/memberwise evaluate --data eval-data/completejourney --as-of 2017-09-30 --out $(EVAL_DIR)/completejourney

evaluate: evaluate-synthetic evaluate-online-retail evaluate-completejourney ## all three backtests

MATRIX_WORLDS ?= all
MATRIX_MEMBERS ?= 6000
MATRIX_OUT ?= $(EVAL_DIR)/matrix

evaluate-matrix: env ## backtest every preset synthetic world (6,000 members each) -> docs/evaluation/matrix/
	$(PY) benchmarks/world_matrix.py --members $(MATRIX_MEMBERS) --seed 7 --as-of 2025-09-30 \
		--data eval-data/worlds --out $(MATRIX_OUT) $(if $(filter-out all,$(MATRIX_WORLDS)),--worlds $(MATRIX_WORLDS))

HILLSTROM_AS_OF ?= 2008-03-02

evaluate-hillstrom: env ## backtest on the Hillstrom e-mail experiment as of the eve of its 2008-03-03 send
	.venv/bin/memberwise convert hillstrom $(SHARED)/hillstrom eval-data/hillstrom
	.venv/bin/memberwise evaluate --data eval-data/hillstrom --as-of $(HILLSTROM_AS_OF) --horizon-days 14 --out $(EVAL_DIR)/hillstrom

clean-demo: ## remove the demo data and home
	rm -rf $(DEMO_DATA) $(DEMO_HOME)

.PHONY: help env demo test test-slow test-all lint format mlflow-ui feast-ui clean-demo evaluate evaluate-synthetic evaluate-online-retail evaluate-completejourney evaluate-matrix evaluate-hillstrom

BENCH_MEMBERS ?= 100000 1000000
BENCH_OUT ?= bench-out

bench: env ## scale benchmark (not part of test): run stages, score, decision API vs bare FastAPI -> $(BENCH_OUT)/bench.json
	nice -n 19 $(PY) benchmarks/bench.py --members $(BENCH_MEMBERS) --out $(BENCH_OUT)

.PHONY: bench

bench-segments: env ## segment queries on 1,000,000 members (DuckDB, PostgreSQL); console page timings on the demo shop
	nice $(PY) benchmarks/segments.py --members 1000000
	nice $(PY) benchmarks/console_pages.py --members 3000

.PHONY: bench-segments
