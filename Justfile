# chatd tasks: `just` lists them. The README's two commands need none of this.

default:
    @just --list

# run the server with the defaults (SSH :2222, TCP :2323, data in ./data)
run *ARGS:
    go run ./cmd/chatd {{ARGS}}

# run the tests, as CI does
test:
    go test -race -count=1 ./...

# build chatd and chat into ./bin
build:
    go build -o bin/chatd ./cmd/chatd
    go build -o bin/chat ./cmd/chat

# .deb and .rpm packages for linux amd64 and arm64 into ./dist (packaging/package; e.g. ARCHES=amd64 FORMATS=deb just package)
package:
    bash packaging/package

# vet, staticcheck (pinned; installed on first use), and fail on unformatted files
lint:
    go vet ./...
    test -z "$(gofmt -l .)"
    bash .ci/run staticcheck

# every fuzz target for a while each, as CI does (10s each there); e.g. just fuzz 1m
fuzz TIME="10s":
    FUZZTIME={{TIME}} bash .ci/run fuzz

# format the code
fmt:
    gofmt -w .

# the room and writer benchmarks
bench:
    go test -run '^$' -bench . -benchmem ./room/

# chatbench against N chatd nodes on a NATS server started for it (and --single, the baseline); e.g. just bench-cluster -n 2 -r 3 --baseline -- -clients 1000 -senders 2 -rate 0.5 -duration 30s -json
bench-cluster *ARGS:
    bash cmd/chatbench/cluster.sh {{ARGS}}

# everything CI runs
ci:
    bash .ci/run
