"""
A second process that checkpoints a WAL database in a loop (as another tool or a second server
connection might): `python3 testkit/checkpointer.py DB MODE` until SIGTERM; prints {"busy": n, "runs": n}.
"""
import json, signal, sqlite3, sys, time

stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
c.execute('PRAGMA busy_timeout=30000')
mode = sys.argv[2] if len(sys.argv) > 2 else 'PASSIVE'
runs = busy = 0
while not stop:
    r = c.execute(f'PRAGMA wal_checkpoint({mode})').fetchone()
    runs += 1
    if r[0] != 0: busy += 1
    time.sleep(0.01)
print(json.dumps({'busy': busy, 'runs': runs}), flush=True)
