#!/usr/bin/env bash
# Arguments that make one benchmark quick: `make bench BENCH_QUICK=1` (what
# CI runs) checks that every benchmark runs on every CPython, with fewer
# rounds and smaller sizes. The figures quoted in notes come from full runs.
case "$(basename "$1" .py)" in
    bench_blocking)      echo "--rounds 2 --latency-rounds 2 -n 20000" ;;
    bench_creation)      echo "--rounds 2 -n 20000" ;;
    bench_dump)          echo "--repeats 1" ;;
    bench_heap)          echo "--units 100000 --repeats 1 --queries 5" ;;
    bench_holders)       echo "--units 20000 --repeats 1 --many 500" ;;
    bench_live_endpoint) echo "--quick" ;;
    bench_memory)        echo "--runs 1 --total 100000" ;;
    bench_monitor)       echo "--tasks 20000 --rounds 2 --throughput-tasks 50000" ;;
    bench_pytest_heap)   echo "--repeats 1 --sizes 0 1000000" ;;
    bench_pytest_plugin) echo "--repeats 1 -n 300" ;;
    bench_snapshot)      echo "--repeats 1 --print-stack-repeats 1 -n 20000" ;;
    *)                   echo "" ;;
esac
