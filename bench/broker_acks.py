#!/usr/bin/env python3
"""The broker's CPU per message for a consumer's acks, one per message against one `multiple`
ack every 20 ms (what the worker does, runtime/src/bus/acks.rs): 3,000 persistent messages
published at 300/s into a quorum queue with confirms, consumed with prefetch 200, the
RabbitMQ process's CPU read from /proc around each run. Three runs each way, alternating.

    pip install pika && python3 bench/broker_acks.py

The queue is named bench_broker_acks and deleted after each run. docs/benchmarks.md quotes it.
"""
import subprocess
import threading
import time

import pika

N = 3000
PARAMS = pika.ConnectionParameters("127.0.0.1")


def broker_ticks():
    pid = subprocess.run(["pgrep", "-x", "beam.smp"], capture_output=True, text=True).stdout.split()[0]
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run(linger):
    name = "bench_broker_acks"
    connection = pika.BlockingConnection(PARAMS)
    channel = connection.channel()
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_purge(name)
    channel.confirm_delivery()
    done = threading.Event()

    def consume():
        c = pika.BlockingConnection(PARAMS)
        ch = c.channel()
        ch.basic_qos(prefetch_count=200)
        seen, pending, last = 0, None, time.time()
        for method, _, _ in ch.consume(name, inactivity_timeout=0.005):
            if method is not None:
                seen += 1
                pending = method.delivery_tag
            if pending is not None and (linger == 0 or time.time() - last > linger or seen >= N):
                ch.basic_ack(pending, multiple=True)
                pending, last = None, time.time()
            if seen >= N and pending is None:
                break
        c.close()
        done.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    time.sleep(0.5)
    before, start = broker_ticks(), time.time()
    for i in range(N):
        channel.basic_publish("", name, b"x" * 600, pika.BasicProperties(delivery_mode=2))
        wait = start + (i + 1) / 300.0 - time.time()
        if wait > 0:
            time.sleep(wait)
    done.wait()
    after = broker_ticks()
    channel.queue_delete(name)
    connection.close()
    return (after - before) * 10 / N  # clock ticks are 10 ms


for _ in range(3):
    for linger in (0, 0.02):
        label = "one ack per message" if linger == 0 else "one multiple ack per 20 ms"
        print(f"{label}: {run(linger):.3f} ms of broker CPU per message", flush=True)
