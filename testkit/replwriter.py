"""
The writer of the replication tests and benchmark: one connection, kept open like a server's,
committing numbered rows at a steady rate; each row holds the wall-clock time (ms) taken just
before its COMMIT, so that a restore --at T can be checked exactly: it must hold rows 1..k with
no gap, none whose time is after T.

  python3 testkit/replwriter.py DB '{"tps": 100, "checkpoint": "TRUNCATE", "pad": 300}'

checkpoint: run after every commit (PASSIVE|FULL|RESTART|TRUNCATE|null); its busy results are
counted; autocheckpoint: SQLite's wal_autocheckpoint in pages (default 1000: the WAL restarts
after about that many pages were written) (a replicator must never make the server's own checkpoints fail). Stops on SIGTERM and
prints {"commits": n, "busy": n, "checkpoints": n}; the same line every quarter of a second while it runs.
"""
import json, signal, sqlite3, sys, time

db = sys.argv[1]
o = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)

c = sqlite3.connect(db, timeout=30, isolation_level=None)
c.execute('PRAGMA journal_mode=WAL')
c.execute('PRAGMA busy_timeout=30000')
if o.get('autocheckpoint') is not None:
    c.execute(f"PRAGMA wal_autocheckpoint={int(o['autocheckpoint'])}")
c.execute('CREATE TABLE IF NOT EXISTS log(i INTEGER PRIMARY KEY, t REAL NOT NULL, pad BLOB)')
tps = o.get('tps', 100)
pad = o.get('pad', 300)
cp = o.get('checkpoint')
commits = busy = checkpoints = 0
print('ready', flush=True)
start = time.time()
said = start
while not stop:
    if time.time() - said >= 0.25:
        said = time.time()
        print(json.dumps({'commits': commits, 'busy': busy, 'checkpoints': checkpoints}), flush=True)
    c.execute('BEGIN IMMEDIATE')
    c.execute('INSERT INTO log(t, pad) VALUES (?, randomblob(?))', (time.time() * 1000.0, pad))
    c.execute('COMMIT')
    commits += 1
    if cp:
        r = c.execute(f'PRAGMA wal_checkpoint({cp})').fetchone()
        checkpoints += 1
        if r[0] != 0: busy += 1
    if tps:
        wait = start + commits / tps - time.time()
        if wait > 0: time.sleep(wait)
c.close()
print(json.dumps({'commits': commits, 'busy': busy, 'checkpoints': checkpoints}), flush=True)
