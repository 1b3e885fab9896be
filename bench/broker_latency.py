#!/usr/bin/env python3
"""The broker's hop alone, per queue type: one persistent message at a time (every 3 ms,
about 300/s) to the local RabbitMQ, publisher confirms on; a consumer on its own connection
notes each arrival. Prints publish -> confirm and publish -> consumer percentiles.

    pip install pika && python3 bench/broker_latency.py [messages=1000]

Queues are named bench_broker_latency_* and deleted at the end. docs/benchmarks.md quotes it.
"""
import sys
import threading
import time

import pika

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
PARAMS = pika.ConnectionParameters("127.0.0.1")


def pct(xs, p):
    return round(xs[min(len(xs) - 1, int(len(xs) * p))], 3)


def run(kind, persistent=True, confirm=True):
    name = f"bench_broker_latency_{kind}_{int(persistent)}_{int(confirm)}"
    connection = pika.BlockingConnection(PARAMS)
    channel = connection.channel()
    durable = kind != "transient"
    channel.queue_declare(name, durable=durable,
                          arguments={"x-queue-type": kind} if durable else {})
    channel.queue_purge(name)
    arrivals, done = {}, threading.Event()

    def consume():
        c = pika.BlockingConnection(PARAMS)
        ch = c.channel()
        ch.basic_qos(prefetch_count=100)
        for method, _, body in ch.consume(name, inactivity_timeout=10):
            if method is None:
                break
            arrivals[int(body)] = time.perf_counter()
            ch.basic_ack(method.delivery_tag)
            if len(arrivals) >= N:
                break
        ch.cancel()
        c.close()
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.3)
    if confirm:
        channel.confirm_delivery()
    properties = pika.BasicProperties(delivery_mode=2 if persistent else 1)
    sent, publish = {}, []
    for i in range(N):
        started = time.perf_counter()
        sent[i] = started
        channel.basic_publish("", name, str(i).encode(), properties)
        publish.append((time.perf_counter() - started) * 1000)
        time.sleep(0.003)
    done.wait(30)
    hop = sorted((arrivals[i] - sent[i]) * 1000 for i in arrivals)
    publish.sort()
    channel.queue_delete(name)
    connection.close()
    if not hop:
        sys.exit(f"{kind}: no message reached the consumer within 30 s; is RabbitMQ up?")
    print(f"{kind:9} persistent={persistent} confirm={confirm}: "
          f"publish{'+confirm' if confirm else ''} p50 {pct(publish, .5)} p90 {pct(publish, .9)} ms; "
          f"publish -> consumer p50 {pct(hop, .5)} p90 {pct(hop, .9)} p99 {pct(hop, .99)} ms "
          f"({len(hop)}/{N} arrived)")


for args in [("quorum",), ("classic",), ("quorum",), ("classic",),
             ("transient", False, False)]:
    run(*args)
