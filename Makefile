# Shortcuts; the scripts are the source of truth (and what the README runs).
.PHONY: demo test build bench fuzz

build:
	go build -o bin/nexus ./cmd/nexus

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench:
	go test -run x -bench . -benchtime 3x ./handshake/ ./revenue/ ./ledger/ ./dns/ ./resolver/
	go test -run x -bench IMVUCreate -benchtime 200x ./daemon/
	bash bench/dns.sh

fuzz:
	bash scripts/fuzz.sh
