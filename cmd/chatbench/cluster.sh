#!/usr/bin/env bash
# cluster.sh runs chatbench against a chatd cluster started for it on this machine: a NATS
# server with JetStream and N chatd nodes on it (--nats, --node nK), each with its own data
# directory and ports, or (--single) one chatd without NATS, the single-node baseline, from the
# same binary. It waits until everything is ready, runs chatbench against all the nodes (their
# addresses and pids), and stops everything it started. Every run starts from empty data
# directories and a fresh NATS store. See BENCHMARKS.md, "Cluster (issue 13)".
#
#   cmd/chatbench/cluster.sh [options] [-- CHATBENCH-ARGS]
#
# Options:
#   -n N              chatd nodes on one NATS server (default 2)
#   --single          one chatd without NATS instead (the baseline)
#   -r R              R runs; with --baseline, each paired with a single-node run, alternating
#                     (base, cluster, cluster, base, base, cluster, ...) (default 1)
#   --baseline        with -r: pair every cluster run with a single-node run
#   -o DIR            keep each run's report (run-I-KIND.json or .txt), chatbench's stderr, the
#                     nodes' logs and metrics at the end, NATS's CPU and any profile there (default: a new directory
#                     under /tmp, printed at the end)
#   --port P          base port, below 32768 (default 27000): NATS P, its monitor P+1; node K's
#                     SSH P+100K+22, TCP P+100K+23, web P+100K+80, metrics and pprof P+100K+99
#   --web             give chatbench the nodes' web listeners (-ws; every node has one, as chatd's
#                     default), for -ws-clients
#   --profile S       a CPU profile of node 1 for S seconds from the start of chatbench's run
#                     phase (chatd --pprof): node1-I.pprof in DIR, with `go tool pprof -top`'s
#                     output beside it (needs chatbench's progress lines: do not pass -q)
#   --bin DIR         where chatd, chatbench and nats-server are built (default /tmp/cb-cluster-bin);
#                     built from this checkout (nats-server at the version go.mod pins) unless
#                     --no-build
#   --no-build        use the binaries already in --bin
#   --chatd-args A    more chatd flags for every node, one string (e.g. "--history 100")
#
# chatbench gets -ssh, -tcp (and -ws) with every node's address and -pid with every node's pid;
# the other arguments are CHATBENCH-ARGS (default: the fan-out scenario, -clients 1000 -senders 2
# -rate 0.5 -duration 30s -json). The nodes run with the abuse limits lifted for the load
# generator, as in BENCHMARKS.md. Example, 3 alternating pairs of the fan-out scenario:
#
#   cmd/chatbench/cluster.sh -n 2 -r 3 --baseline -o /tmp/fanout -- -clients 1000 -senders 2 -rate 0.5 -duration 30s -json
set -euo pipefail

nodes=2 single=0 runs=1 baseline=0 out="" port=27000 web=0 profile=0
bin=/tmp/cb-cluster-bin build=1 extra=""
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case "$1" in
	-n) nodes=$2; shift 2 ;;
	--single) single=1; shift ;;
	-r) runs=$2; shift 2 ;;
	--baseline) baseline=1; shift ;;
	-o) out=$2; shift 2 ;;
	--port) port=$2; shift 2 ;;
	--web) web=1; shift ;;
	--profile) profile=$2; shift 2 ;;
	--bin) bin=$2; shift 2 ;;
	--no-build) build=0; shift ;;
	--chatd-args) extra=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	*) echo "cluster.sh: unknown option $1 (-h lists them)" >&2; exit 2 ;;
	esac
done
benchargs=("$@")
[ ${#benchargs[@]} -gt 0 ] || benchargs=(-clients 1000 -senders 2 -rate 0.5 -duration 30s -json)
if ! [[ $nodes =~ ^[1-9][0-9]?$ && $runs =~ ^[1-9][0-9]*$ && $port =~ ^[0-9]+$ && $profile =~ ^[0-9]+$ ]]; then
	echo "cluster.sh: -n, -r, --port and --profile take numbers" >&2
	exit 2
fi
if [ $((port + 100 * nodes + 99)) -ge 32768 ]; then
	echo "cluster.sh: --port $port: the nodes' ports must stay below 32768 (the load generator's own connections take ports above)" >&2
	exit 2
fi
[ -n "$out" ] || out=$(mktemp -d /tmp/cb-cluster.XXXXXX)
mkdir -p "$out"
out=$(cd "$out" && pwd)

repo=$(cd "$(dirname "$0")/../.." && pwd)
if [ $build = 1 ]; then
	mkdir -p "$bin"
	echo "cluster.sh: building chatd, chatbench and nats-server into $bin" >&2
	(cd "$repo" && go build -o "$bin/chatd" ./cmd/chatd && go build -o "$bin/chatbench" ./cmd/chatbench &&
		go build -o "$bin/nats-server" github.com/nats-io/nats-server/v2)
fi
for b in chatd chatbench nats-server; do
	[ -x "$bin/$b" ] || { echo "cluster.sh: no $bin/$b (drop --no-build)" >&2; exit 1; }
done
# Every client is a socket: the nodes inherit the hard limit.
ulimit -n "$(ulimit -Hn)"

# What this script started, stopped on any exit.
pids=()
stopall() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	pids=()
}
trap stopall EXIT
trap 'exit 130' INT TERM

# waitfor WHAT CMD...: run CMD every 100 ms until it succeeds, for at most 60 s.
waitfor() {
	local what=$1
	shift
	for _ in $(seq 600); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "cluster.sh: $what not ready after 60 s" >&2
	return 1
}

# greets PORT: chatd's TCP listener answers with its greeting, so the node is serving.
greets() (
	exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
	line=""
	read -r -t 5 line <&3 || true
	[[ $line == *welcome* ]]
)

# listening PORT: something accepts connections on 127.0.0.1:PORT.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# fail DIR: a run could not start: stop what it started and remove its data.
fail() {
	stopall
	rm -rf "$1"
}

# cpuof PID: its CPU time (utime+stime) in clock ticks, from /proc.
cpuof() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }

# onerun I KIND: one run, KIND "cluster" (N nodes on NATS) or "single" (one chatd, no NATS).
onerun() {
	local i=$1 kind=$2 n=$nodes
	[ "$kind" = single ] && n=1
	local p k
	# A port something else holds would make a stale server look ready.
	for p in "$port" $((port + 1)); do
		if [ "$kind" = cluster ] && listening "$p"; then
			echo "cluster.sh: port $p is in use (another NATS?): give another --port" >&2
			return 1
		fi
	done
	for k in $(seq "$n"); do
		for p in 22 23 80 99; do
			if listening $((port + 100 * k + p)); then
				echo "cluster.sh: port $((port + 100 * k + p)) is in use: give another --port" >&2
				return 1
			fi
		done
	done
	local dir
	dir=$(mktemp -d /tmp/cb-cluster-data.XXXXXX)
	local natspid="" natsurl="" cpu0=""
	if [ "$kind" = cluster ]; then
		"$bin/nats-server" -js -sd "$dir/nats" -a 127.0.0.1 -p "$port" -m $((port + 1)) >"$out/run-$i-nats.log" 2>&1 &
		natspid=$!
		pids+=("$natspid")
		natsurl="nats://127.0.0.1:$port"
		waitfor "NATS" curl -sf "http://127.0.0.1:$((port + 1))/healthz?js-enabled-only=true" || { fail "$dir"; return 1; }
	fi
	local ssh=() tcp=() ws=() node=()
	for k in $(seq "$n"); do
		local b=$((port + 100 * k))
		local args=(--data-dir "$dir/node$k" --ssh-addr "127.0.0.1:$((b + 22))" --tcp-addr "127.0.0.1:$((b + 23))"
			--http-addr "127.0.0.1:$((b + 80))" --metrics-addr "127.0.0.1:$((b + 99))" --limit-exempt 127.0.0.1 --msg-rate 0 --max-conns 0
			--max-conns-per-ip 0 --conn-rate-per-ip 0 --handshake-timeout 120s --rooms-per-hour 0 --max-rooms 0
			--log-level warn)
		[ "$profile" -gt 0 ] && args+=(--pprof)
		[ "$kind" = cluster ] && args+=(--nats "$natsurl" --node "n$k")
		# shellcheck disable=SC2206 # --chatd-args is meant to split into flags
		[ -n "$extra" ] && args+=($extra)
		"$bin/chatd" "${args[@]}" >"$out/run-$i-$kind-node$k.log" 2>&1 &
		node+=("$!")
		pids+=("$!")
		ssh+=("127.0.0.1:$((b + 22))")
		tcp+=("127.0.0.1:$((b + 23))")
		ws+=("127.0.0.1:$((b + 80))")
	done
	for k in $(seq "$n"); do
		waitfor "node $k" greets $((port + 100 * k + 23)) || { fail "$dir"; return 1; }
		kill -0 "${node[k - 1]}" 2>/dev/null || { echo "cluster.sh: node $k exited" >&2; fail "$dir"; return 1; }
	done
	local join
	join() { local IFS=,; echo "$*"; }
	local cmd=("$bin/chatbench" -ssh "$(join "${ssh[@]}")" -tcp "$(join "${tcp[@]}")" -pid "$(join "${node[@]}")")
	[ $web = 1 ] && cmd+=(-ws "$(join "${ws[@]}")")
	cmd+=("${benchargs[@]}")
	local report="$out/run-$i-$kind.txt"
	[[ " ${benchargs[*]} " == *" -json "* ]] && report="$out/run-$i-$kind.json"
	echo "cluster.sh: run $i, $kind ($n node(s)): ${cmd[*]}" >&2
	[ -n "$natspid" ] && cpu0=$(cpuof "$natspid")
	local profiler=""
	if [ "$profile" -gt 0 ]; then
		(
			for _ in $(seq 6000); do
				grep -q '^run ' "$out/run-$i-$kind.err" 2>/dev/null && break
				sleep 0.1
			done
			curl -sf -o "$out/node1-$i-$kind.pprof" "http://127.0.0.1:$((port + 199))/debug/pprof/profile?seconds=$profile" &&
				go tool pprof -top "$bin/chatd" "$out/node1-$i-$kind.pprof" >"$out/node1-$i-$kind.top.txt" 2>/dev/null
		) &
		profiler=$!
	fi
	local rc=0
	"${cmd[@]}" >"$report" 2> >(tee "$out/run-$i-$kind.err" >&2) || rc=$?
	[ -n "$profiler" ] && { wait "$profiler" || echo "cluster.sh: no profile for run $i" >&2; }
	# The nodes' metrics at the end (with --nats: the relay's publish latency, lag and counts).
	for k in $(seq "$n"); do
		curl -sf -o "$out/run-$i-$kind-node$k.metrics" "http://127.0.0.1:$((port + 100 * k + 99))/metrics" || true
	done
	if [ -n "$natspid" ]; then
		local cpu1 rss
		cpu1=$(cpuof "$natspid")
		rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$natspid/status")
		echo "nats-server: $(((cpu1 - cpu0) / 100)).$(printf %02d $(((cpu1 - cpu0) % 100))) s CPU during chatbench, RSS $rss KiB at the end" | tee "$out/run-$i-nats.txt" >&2
	fi
	cat "$report"
	stopall
	rm -rf "$dir"
	return $rc
}

status=0
for i in $(seq "$runs"); do
	if [ $single = 1 ]; then
		onerun "$i" single || status=$?
	elif [ $baseline = 1 ] && [ $((i % 2)) = 1 ]; then
		onerun "$i" single || status=$?
		onerun "$i" cluster || status=$?
	elif [ $baseline = 1 ]; then
		onerun "$i" cluster || status=$?
		onerun "$i" single || status=$?
	else
		onerun "$i" cluster || status=$?
	fi
done
echo "cluster.sh: reports and logs in $out" >&2
exit $status
