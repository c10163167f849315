# Shortcuts; the scripts are the source of truth (and what the README runs).
.PHONY: demo test build bench bench-peers fuzz

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

# Against the peers in the same run (root; installs Postfix for smtp.sh).
bench-peers:
	bash bench/smtp.sh
	bash bench/compute.sh
	bash bench/net.sh

fuzz:
	bash scripts/fuzz.sh
