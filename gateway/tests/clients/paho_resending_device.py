"""A bedside device on Eclipse Paho (paho-mqtt 2), as an independent client
library for gateway/tests/uplink_resend.rs.

It connects with a persistent session (clean_session off), publishes COUNT
QoS 1 telemetry messages with at most 16 unacknowledged, and keeps going
through connection losses with Paho's own reconnect and in-flight resend,
until every message is acknowledged or SECONDS pass. It prints one JSON
object: the seqs it published, the seqs acknowledged (Paho's on_publish),
and how many times the connection was lost.

usage: paho_resending_device.py HOST PORT CA CERT KEY DEVICE_ID COUNT SECONDS
"""

import datetime
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

WINDOW = 16


def payload(seq):
    ts = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    return json.dumps({
        "schema": 1,
        "seq": seq,
        "ts": ts,
        "readings": [
            {"kind": "heart_rate", "value": 60.0 + seq % 60},
            {"kind": "spo2", "value": 95.0 + seq % 5},
        ],
    })


def main():
    host, port, ca, cert, key, device, count, seconds = sys.argv[1:9]
    port, count, seconds = int(port), int(count), float(seconds)
    lock = threading.Condition()
    state = {"connected": False, "lost": 0}
    in_flight = {}
    published, acked = [], []

    def on_connect(client, userdata, flags, reason_code, properties):
        with lock:
            state["connected"] = not reason_code.is_failure
            lock.notify_all()

    def on_disconnect(client, userdata, flags, reason_code, properties):
        with lock:
            if state["connected"]:
                state["lost"] += 1
            state["connected"] = False
            lock.notify_all()

    def on_publish(client, userdata, mid, reason_code, properties):
        with lock:
            seq = in_flight.pop(mid, None)
            if seq is not None:
                acked.append(seq)
            lock.notify_all()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=device,
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )
    client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
    client.max_inflight_messages_set(WINDOW)
    client.reconnect_delay_set(min_delay=0.2, max_delay=1)
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish
    client.connect_async(host, port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + seconds
    topic = f"wardgate/v1/devices/{device}/telemetry"
    seq = 1
    with lock:
        while time.monotonic() < deadline:
            if seq > count and not in_flight:
                break
            if state["connected"] and seq <= count and len(in_flight) < WINDOW:
                # Paho keeps a QoS 1 message it has handed out until its
                # PUBACK, and resends it (DUP set) after a reconnect.
                info = client.publish(topic, payload(seq), qos=1)
                in_flight[info.mid] = seq
                published.append(seq)
                seq += 1
                continue
            lock.wait(0.2)
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"published": published, "acked": acked, "lost": state["lost"]}))


if __name__ == "__main__":
    main()
